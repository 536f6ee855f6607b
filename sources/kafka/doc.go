// Package kafka reads Kafka topics the two ways Spark Streaming does, both
// exactly-once:
//
//   - direct: every batch is one offset range per partition, from the
//     positions the sink committed up to the partition's end as last
//     listed (capped by max-records-per-partition, max-rate and
//     backpressure). One client consumes the partitions from those
//     positions and fetches ahead while a batch is transformed and
//     committed; what it fetched past a batch's cut is kept for the next
//     one. The sink is the only keeper of offsets; they are echoed to the
//     consumer group after each commit so lag tools see the pipeline.
//   - receiver: a consumer-group reader runs continuously and cuts blocks
//     every block-interval into a write-ahead log, fsynced before the
//     group offset is committed; batches are cut from write-ahead log
//     sequence numbers, which is what the sink stores.
//
// Both modes read through franz-go (github.com/twmb/franz-go/pkg/kgo):
// direct mode with explicitly placed partitions, receiver mode with its
// group consumer. Its read_committed consumer drops the records of aborted
// transactions, and it decodes record batches without copying each record
// (keys and values stay in the fetched or decompressed batch's memory);
// kafka-go, used before, spent most of direct mode's time decoding. The
// built-in broker and any external cluster (TLS, SASL) are read the same
// way, with partition leaders found by the client.
//
// In both modes, records that retention deleted before the pipeline read
// them go by on-data-loss: fail stops with ErrDataLoss naming the partition
// and range, skip logs them, counts sluice_records_lost_total and reads on
// from the log start.
package kafka
