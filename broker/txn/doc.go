// Package txn is the built-in broker's transaction coordinator (KIP-98):
// InitProducerId with a transactional id, AddPartitionsToTxn,
// AddOffsetsToTxn, TxnOffsetCommit and EndTxn, plus the timeout that
// aborts a transaction its producer abandoned.
//
// Like package group it is a state machine without sockets: requests come
// in as Go values and every transition that must survive a crash is
// appended to a checksummed log and fsynced before it is answered or acted
// on (concurrent transactions share fsyncs; a failed write or fsync stops
// the coordinator until a restart reloads the log). Writing the COMMIT or
// ABORT markers to the partitions and applying committed offsets to the
// groups is the caller's part: a decided transaction comes
// back as a Completion to run, then Complete records it done. A crash
// between the decision (PrepareCommit, PrepareAbort) and Complete leaves
// the decision in the log; Pending returns it after the restart and the
// markers are written again (a repeated marker is harmless). That is also
// why Complete alone is not fsynced before it returns: losing it costs a
// repeated completion, and the id's next transition syncs it.
//
// Fencing follows Kafka: each InitProducerId bumps the id's epoch, and
// requests under an older epoch get PRODUCER_FENCED; a transaction still
// open at an init is aborted under the new epoch first, and one open past
// its timeout is aborted by the broker under a bumped epoch, so its
// producer can no longer add to it.
package txn
