package engine

import (
	"context"
	"time"
)

// StateBackend keeps the keyed state of a pipeline's stateful steps
// (aggregations, windows, deduplication, plugins' keyed state) under the
// epoch rule of docs/ARCHITECTURE.md §18: a task's state after epoch e is
// durable before the sink commits e, and a task restores exactly the state
// of the epoch the sink says it committed.
//
// Who calls what: Restore and Discard on the batch loop with no intake
// running; Begin on the intake, once per batch, before the transforms run
// on it; StateBatch.Prepare and Committed on the loop, oldest batch first.
// Transforms read and write a batch's state through the context Begin
// returned (package state's ViewFrom) while the loop prepares and commits
// the batch before it, so an implementation locks what both share.
type StateBackend interface {
	// Restore brings every task's state to the epoch committed(t) the sink
	// reported and discards anything later. tasks lists the tasks this
	// process runs; nil means a single epoch chain, whose every task has
	// the chain's epoch.
	Restore(ctx context.Context, tasks []Task, committed func(Task) uint64) error
	// Begin starts the state changes of the next batch; the transforms get
	// the returned context. Batches are begun in the order they are read,
	// and a batch sees the changes of those begun before it.
	Begin(ctx context.Context) (context.Context, StateBatch)
	// Discard drops every batch begun and not committed: after a failure,
	// a reassignment or a stop. A batch prepared but not committed is kept
	// aside until Restore learns whether the sink committed it (a commit
	// whose acknowledgement was lost).
	Discard()
	Close() error
}

// StateBatch is the state changes of one batch.
type StateBatch interface {
	// Prepare makes the batch's changes durable before the sink commits
	// it, task t's tagged with epoch(t).
	Prepare(ctx context.Context, epoch func(Task) uint64) error
	// Committed reports that the sink committed the batch: its changes are
	// the committed state from now on.
	Committed()
	// Empty reports whether the batch changed nothing.
	Empty() bool
}

// Ticker is the optional capability of a Transform that must run even
// when no records arrive: windows that close on the clock or on idleness.
// When a read returns nothing, the engine runs the chain with no input at
// most once per the shortest Tick of its transforms; a transform without
// Ticker is skipped while its input is empty. A tick whose output and
// state changes are empty starts no batch.
type Ticker interface {
	Tick() time.Duration
}
