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
// The data directory holds cluster.id, one directory per topic under
// topics/ (topic.json with its partition count and configs, then one
// directory per partition, see package storage), and a clean-shutdown
// marker that lets the next Open skip re-checking CRCs.
package broker
