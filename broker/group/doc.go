// Package group is the built-in broker's group coordinator for Kafka's
// classic consumer-group protocol (JoinGroup, SyncGroup, Heartbeat,
// LeaveGroup) and its committed-offset store (OffsetCommit, OffsetFetch).
//
// The coordinator is a state machine without sockets: requests come in as
// plain Go values, replies that must wait for a rebalance come back on
// channels, and time only moves when the caller says so (Tick), so tests
// drive rebalances step by step. Assignment is the clients' business (range,
// round-robin, sticky all work): the coordinator only picks a protocol all
// members support, elects a leader and relays the leader's assignments.
//
// Committed offsets are durable: every commit is appended to a checksummed
// log and fsynced before the reply, and the log is compacted when it grows,
// in the spirit of Kafka's __consumer_offsets.
package group
