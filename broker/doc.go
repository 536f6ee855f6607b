// Package broker is Sluice's embedded Kafka broker: a Kafka wire-protocol
// server, durable partition logs, the group coordinator and producer state.
// It is usable as a library (Open, Serve, Close) and as `sluice broker`.
//
// Requests are decoded and responses encoded with franz-go's kmsg; the
// served APIs and their version ranges are the table in apis.go, one handler
// per API key. Each connection answers in request order: a reader decodes
// and runs the synchronous part of a handler (appends happen here, so one
// connection's batches keep their order), a writer finishes replies that
// wait (acks=all fsyncs, fetch long-polls) and writes them, sending fetched
// record batches from the segment files with sendfile on plain TCP.
//
// Idempotent producers (franz-go's default, enable.idempotence elsewhere)
// get a producer id from InitProducerId; each partition log checks their
// batches' epoch and sequence numbers and answers a retry of a batch it
// already holds with the first try's offset instead of writing it again
// (see package storage).
//
// Transactions (KIP-98) work as in Kafka before KIP-890's transaction
// version 2: FindCoordinator (key type 1), InitProducerId with a
// transactional id, AddPartitionsToTxn v0-3, AddOffsetsToTxn v0-3,
// TxnOffsetCommit v0-3 and EndTxn v0-3, so franz-go's transactional
// producer and GroupTransactSession and librdkafka's transactional producer
// work unchanged. A transactional batch is taken only into a partition
// added to its producer's open transaction (else INVALID_TXN_STATE), from
// the current epoch. The coordinator (package txn) fences older epochs,
// aborts a transaction open at a new producer's init or past its
// transaction.timeout.ms (at most txn.MaxTimeout), and keeps its state in a
// checksummed log. EndTxn answers once the COMMIT or ABORT markers are on
// every partition of the transaction (fsynced) and its offsets are applied
// to the groups; a decision a crash interrupted is completed on restart,
// and a transaction open at a crash is aborted when its timeout, counted
// from its start, passes. Fetch with isolation_level=1 (read_committed)
// stops at the last stable offset and lists the aborted transactions of
// the range; ListOffsets latest with isolation_level=1 returns the last
// stable offset; OffsetFetch with require_stable answers
// UNSTABLE_OFFSET_COMMIT while a transaction holds an offset of the group.
// ListTransactions, DescribeTransactions and DescribeProducers (KIP-664)
// show what is open and which producer holds a last stable offset back.
//
// The data directory holds cluster.id, producer-ids (the bound below which
// producer ids may have been handed out), one directory per topic under
// topics/ (topic.json with its partition count and configs, then one
// directory per partition, see package storage), groups/ (committed
// offsets), transactions/ (the transaction coordinator's log), and a
// clean-shutdown marker that lets the next Open skip re-checking CRCs.
package broker
