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
// Split into tasks (ARCHITECTURE §11; only on the source's cluster), the
// sink keeps no chain of its own: each round's transaction commits the
// tasks' positions as the source group's offsets under the group
// membership the tasks were opened in (KIP-447), and OpenTasks reads them
// back require_stable; see tasks.go.
//
// Open reads the checkpoint read_committed, backwards from the checkpoint
// partition's last stable offset, so an aborted epoch's checkpoint is never
// taken. The checkpoint topic is compacted (cleanup.policy=compact, 1 MiB
// segments), on Kafka and the built-in broker alike; one made earlier
// without compaction is altered to it at Open where the broker allows.
package kafka
