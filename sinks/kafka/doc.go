// Package kafka is the exactly-once Kafka sink. Each epoch is one producer
// transaction (franz-go's kgo: kafka-go has no transactional producer)
// holding the epoch's output records, its dead letters, and a checkpoint
// record — pipeline, epoch and source positions — in the pipeline's
// checkpoint topic. Committing the transaction is the atomic step of
// docs/ARCHITECTURE.md §4: read_committed consumers see the output exactly when the
// checkpoint that covers it is visible.
//
// Fencing has two layers. Open initialises the transactional id, which
// bumps its producer epoch: the broker then refuses every older instance
// (engine.ErrFenced), aborts the transaction it left open and finishes one
// it was committing. Commit checks contiguity against the checkpoint this
// instance read or wrote last, so an epoch is never skipped or committed
// twice.
//
// Open reads the checkpoint read_committed, backwards from the checkpoint
// partition's last stable offset, so an aborted epoch's checkpoint is never
// taken. Against the built-in broker the checkpoint topic keeps every
// record; against Kafka it is compacted.
package kafka
