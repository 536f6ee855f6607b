// Package kafka reads Kafka topics the two ways Spark Streaming does, both
// exactly-once:
//
//   - direct: every batch is one offset range per partition, from the
//     positions the sink committed up to the partition's end (capped by
//     max-records-per-partition, max-rate and backpressure), read in
//     parallel with explicit offsets. The sink is the only keeper of
//     offsets; they are echoed to the consumer group after each commit so
//     lag tools see the pipeline.
//   - receiver: a consumer-group reader runs continuously and cuts blocks
//     every block-interval into a write-ahead log, fsynced before the
//     group offset is committed; batches are cut from write-ahead log
//     sequence numbers, which is what the sink stores.
//
// Direct mode talks to Kafka through github.com/segmentio/kafka-go and
// filters aborted transactions itself; receiver mode uses franz-go's group
// consumer (github.com/twmb/franz-go/pkg/kgo), which drops them, where
// kafka-go's reader hands them out. The built-in broker and any external
// cluster (TLS, SASL) are read the same way.
//
// In both modes, records that retention deleted before the pipeline read
// them go by on-data-loss: fail stops with ErrDataLoss naming the partition
// and range, skip logs them, counts sluice_records_lost_total and reads on
// from the log start.
package kafka
