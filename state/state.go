// Package state keeps the keyed state of a pipeline's stateful steps
// (aggregations, windows, deduplication, plugins' keyed state) so that it
// obeys the same exactly-once rule as the output: a task's state after
// epoch e is durable before the sink commits e, and on open a task gets
// back exactly the state of the epoch the sink committed
// (docs/ARCHITECTURE.md §18).
//
// Steps reach a batch's state through the View in the context the engine
// passes to Transform.Process (ViewFrom). A View is one batch's: it reads
// the committed state, the changes of batches begun before it and not yet
// committed (transforms run a batch ahead of the sink), and its own.
package state

import (
	"context"

	"github.com/sluicehq/sluice/engine"
)

// Limits on what a step may store, so one record cannot make the store
// (or a changelog record) unbounded.
const (
	// MaxKeyBytes bounds a key, namespace excluded: keys are read and
	// compared often and held in the batch overlays.
	MaxKeyBytes = 4 << 10
	// MaxValueBytes bounds a value: it travels in one changelog record, so
	// it stays well under a broker's default max.message.bytes (1 MiB)
	// with the previous value beside it.
	MaxValueBytes = 256 << 10
	// MaxNamespaceBytes bounds a step's namespace name.
	MaxNamespaceBytes = 255
)

// View is one batch's read-write view of the state. Keys live per task
// (the source partition the input record came from: engine.Task of its
// Partition) and per namespace (a stable name of the step, so two steps
// never see each other's keys). Keys and values passed in are copied;
// slices returned are valid until the next call on the View and must not
// be modified. A View is used by one goroutine: the transform chain's.
type View interface {
	// Get returns key's value; ok is false when there is none.
	Get(task engine.Task, ns string, key []byte) (value []byte, ok bool, err error)
	// Put sets key's value.
	Put(task engine.Task, ns string, key, value []byte) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(task engine.Task, ns string, key []byte) error
	// Scan calls fn for each key in [from, to) of task's namespace ns in
	// byte order (to nil: to the end of the namespace), with the changes
	// of pending batches and this one merged in, until fn returns false.
	// fn must not call the View.
	Scan(task engine.Task, ns string, from, to []byte, fn func(key, value []byte) bool) error
}

type viewKey struct{}

// WithView returns ctx carrying v; a StateBackend's Begin uses it.
func WithView(ctx context.Context, v View) context.Context {
	return context.WithValue(ctx, viewKey{}, v)
}

// ViewFrom returns the View of the batch ctx belongs to, nil when the
// pipeline keeps no state.
func ViewFrom(ctx context.Context) View {
	v, _ := ctx.Value(viewKey{}).(View)
	return v
}
