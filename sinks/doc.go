// Package sinks holds Sluice's sinks, one sub-package each (file, postgres,
// kafka, stdout), the conformance suite every exactly-once sink passes
// (sinktest), and what sinks share: DeadLetter, which turns a rejected
// record into the record a dead-letter destination stores, with the reason,
// plugin and source position in sluice.* headers; and Outbox, the sinks
// whose committed dead letters a forwarder can move to a Kafka topic.
package sinks
