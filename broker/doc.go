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
// (see package storage). Transactions are not supported yet: a
// transactional id is refused.
//
// The data directory holds cluster.id, producer-ids (the bound below which
// producer ids may have been handed out), one directory per topic under
// topics/ (topic.json with its partition count and configs, then one
// directory per partition, see package storage), and a clean-shutdown
// marker that lets the next Open skip re-checking CRCs.
package broker
