// Package broker is Sluice's embedded Kafka broker: a Kafka wire-protocol
// server, durable partition logs, the group coordinator and producer state.
// It is usable as a library (Open, Serve, Close) and as `sluice broker`.
package broker
