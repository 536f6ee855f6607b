// Package engine is Sluice's runtime: the batch loop that moves records from a
// Source through Transforms into a Sink with exactly-once semantics.
//
// The contract (docs/ARCHITECTURE.md §4): the sink is the source of truth for where a
// pipeline resumes. On start the engine asks the sink for its last committed
// epoch and positions, opens the source there, and for every batch e it reads,
// transforms, stages the output with Sink.Write and then makes output and
// positions visible in one atomic Sink.Commit(e, until). A crash before Commit
// returns recomputes batch e from the same positions; its staged output was
// never visible. The protocol itself is a state machine without I/O
// (Protocol) so tests can drive it step by step. Reading and transforming
// batch e+1 overlaps the write and commit of batch e (see Pipeline.Run);
// the protocol still takes batches one at a time, in order. Which component
// calls may overlap, and on which goroutine each is made, is stated in
// component.go.
package engine
