// Package storage is the built-in broker's durable partition log: per
// partition, a directory of segment files holding Kafka record batches
// (magic v2) exactly as produced, with only the base offset patched, next to
// a sparse offset index and a time index. It verifies each batch's CRC-32C
// on the way in, coalesces fsyncs of concurrent writers (group commit),
// rolls segments by size and age, deletes old segments by time and size, and
// after a crash re-checks the unflushed tail and truncates a torn batch.
// It also keeps idempotent producers' sequence state per partition, so a
// retried batch is recognised and not stored twice, across restarts too
// (producers.go explains how). For transactions it tracks each open
// transaction's first offset, the last stable offset, and the aborted
// transactions per segment in .txnindex files, and writes the markers the
// coordinator asks for (txns.go).
//
// Reads return file sections rather than bytes, so the protocol server can
// send them to a socket without copying them through user space.
package storage
