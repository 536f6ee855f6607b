package state

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/google/btree"

	"github.com/sluicehq/sluice/engine"
)

// Memory is an engine.StateBackend that keeps everything in memory: the
// committed state and the changes of the batches not yet committed. It
// follows the epoch rule within one process (a failed batch's changes are
// discarded, a batch prepared whose commit outcome was lost is kept or
// dropped by Restore as the sink says) but survives no restart: tests use
// it, and it is the model the durable backend is checked against.
type Memory struct {
	mu sync.Mutex
	// base is the committed state, per task and namespace.
	base map[space]*btree.BTreeG[entry]
	// epochs is the epoch of each task's committed state (the last batch
	// applied to base), so a Restore to an earlier one is refused.
	epochs map[engine.Task]uint64
	// pending are the batches begun and not committed, oldest first.
	pending []*memBatch
	// aside are batches Discard found prepared but not committed: whether
	// the sink committed them is for Restore to learn.
	aside []*memBatch
}

// space is one task's namespace.
type space struct {
	task engine.Task
	ns   string
}

type entry struct {
	key, value []byte
}

func lessEntry(a, b entry) bool { return bytes.Compare(a.key, b.key) < 0 }

// change is one key's new value in a batch; a nil value is a deletion.
type change struct {
	value []byte
	del   bool
}

// NewMemory returns an empty in-memory state backend.
func NewMemory() *Memory {
	return &Memory{base: map[space]*btree.BTreeG[entry]{}, epochs: map[engine.Task]uint64{}}
}

// Restore implements engine.StateBackend: batches prepared and not
// committed are applied, task by task, where the sink says their epoch
// was committed.
func (m *Memory) Restore(_ context.Context, tasks []engine.Task, committed func(engine.Task) uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range m.aside {
		for sp, changes := range b.changes {
			if e, ok := b.epochs[sp.task]; ok && e <= committed(sp.task) && e > m.epochs[sp.task] {
				m.apply(sp, changes)
			}
		}
		for t, e := range b.epochs {
			if e <= committed(t) && e > m.epochs[t] {
				m.epochs[t] = e
			}
		}
	}
	m.aside = nil
	for t, e := range m.epochs {
		if (tasks == nil || slices.Contains(tasks, t)) && e > committed(t) {
			return fmt.Errorf("state of task %d is at epoch %d, past the %d its sink committed; the sink's checkpoint was moved back: delete the pipeline's state to start it over", t, e, committed(t))
		}
	}
	return nil
}

// Begin implements engine.StateBackend.
func (m *Memory) Begin(ctx context.Context) (context.Context, engine.StateBatch) {
	b := &memBatch{m: m, changes: map[space]map[string]change{}}
	m.mu.Lock()
	m.pending = append(m.pending, b)
	m.mu.Unlock()
	return WithView(ctx, b), b
}

// Discard implements engine.StateBackend.
func (m *Memory) Discard() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range m.pending {
		if b.epochs != nil {
			m.aside = append(m.aside, b)
		}
		b.gone = true
	}
	m.pending = nil
}

// Close implements engine.StateBackend.
func (m *Memory) Close() error { return nil }

// Snapshot returns a copy of the committed state of task: namespace → key
// → value. Tests compare it with a model.
func (m *Memory) Snapshot(task engine.Task) map[string]map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]map[string]string{}
	for sp, t := range m.base {
		if sp.task != task || t.Len() == 0 {
			continue
		}
		kv := map[string]string{}
		t.Ascend(func(e entry) bool {
			kv[string(e.key)] = string(e.value)
			return true
		})
		out[sp.ns] = kv
	}
	return out
}

// apply writes a batch's changes of one space into base. m.mu is held.
func (m *Memory) apply(sp space, changes map[string]change) {
	t := m.base[sp]
	if t == nil {
		t = btree.NewG(16, lessEntry)
		m.base[sp] = t
	}
	for k, c := range changes {
		if c.del {
			t.Delete(entry{key: []byte(k)})
		} else {
			t.ReplaceOrInsert(entry{key: []byte(k), value: c.value})
		}
	}
	if t.Len() == 0 {
		delete(m.base, sp)
	}
}

// memBatch is one batch's changes and its View.
type memBatch struct {
	m       *Memory
	changes map[space]map[string]change
	epochs  map[engine.Task]uint64 // set by Prepare, for the tasks changed
	gone    bool                   // discarded or committed: a View call fails
}

// errGone is returned by the View of a batch that was discarded or
// committed: the step kept the View past its Process call.
var errGone = fmt.Errorf("state: the batch's view was used after its batch ended; a step must not keep the View past Process")

// Prepare implements engine.StateBatch: in memory there is nothing to make
// durable, but the epochs are kept for Restore.
func (b *memBatch) Prepare(_ context.Context, epoch func(engine.Task) uint64) error {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	b.epochs = map[engine.Task]uint64{}
	for sp := range b.changes {
		b.epochs[sp.task] = epoch(sp.task)
	}
	return nil
}

// Committed implements engine.StateBatch.
func (b *memBatch) Committed() {
	m := b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if b.gone {
		return
	}
	b.gone = true
	if i := slices.Index(m.pending, b); i >= 0 {
		m.pending = slices.Delete(m.pending, i, i+1)
	}
	for sp, changes := range b.changes {
		m.apply(sp, changes)
	}
	for t, e := range b.epochs {
		m.epochs[t] = max(m.epochs[t], e)
	}
}

// Empty implements engine.StateBatch.
func (b *memBatch) Empty() bool {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	return len(b.changes) == 0
}

func checkArgs(ns string, key []byte) error {
	switch {
	case len(ns) == 0 || len(ns) > MaxNamespaceBytes:
		return fmt.Errorf("state: namespace %q must be 1 to %d bytes", ns, MaxNamespaceBytes)
	case len(key) > MaxKeyBytes:
		return fmt.Errorf("state: a key of %d bytes is over the limit of %d; key state by something shorter (a hash of the key)", len(key), MaxKeyBytes)
	}
	return nil
}

// Get implements View.
func (b *memBatch) Get(task engine.Task, ns string, key []byte) ([]byte, bool, error) {
	if err := checkArgs(ns, key); err != nil {
		return nil, false, err
	}
	m := b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if b.gone {
		return nil, false, errGone
	}
	sp := space{task, ns}
	if c, ok := b.latest(sp, string(key)); ok {
		return c.value, !c.del, nil
	}
	if t := m.base[sp]; t != nil {
		if e, ok := t.Get(entry{key: key}); ok {
			return e.value, true, nil
		}
	}
	return nil, false, nil
}

// latest returns the newest change of key in b or the pending batches
// begun before it. m.mu is held.
func (b *memBatch) latest(sp space, key string) (change, bool) {
	if c, ok := b.changes[sp][key]; ok {
		return c, true
	}
	pend := b.m.pending
	i := slices.Index(pend, b)
	if i < 0 {
		i = len(pend)
	}
	for j := i - 1; j >= 0; j-- {
		if c, ok := pend[j].changes[sp][key]; ok {
			return c, true
		}
	}
	return change{}, false
}

// Put implements View.
func (b *memBatch) Put(task engine.Task, ns string, key, value []byte) error {
	if err := checkArgs(ns, key); err != nil {
		return err
	}
	if len(value) > MaxValueBytes {
		return fmt.Errorf("state: a value of %d bytes is over the limit of %d; keep less per key", len(value), MaxValueBytes)
	}
	return b.set(space{task, ns}, key, change{value: bytes.Clone(value)})
}

// Delete implements View.
func (b *memBatch) Delete(task engine.Task, ns string, key []byte) error {
	if err := checkArgs(ns, key); err != nil {
		return err
	}
	return b.set(space{task, ns}, key, change{del: true})
}

func (b *memBatch) set(sp space, key []byte, c change) error {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	if b.gone {
		return errGone
	}
	if c.value == nil && !c.del {
		c.value = []byte{}
	}
	cs := b.changes[sp]
	if cs == nil {
		cs = map[string]change{}
		b.changes[sp] = cs
	}
	cs[string(key)] = c
	return nil
}

// Scan implements View: the base's keys in range, merged with the newest
// change of each key in the pending batches up to b.
func (b *memBatch) Scan(task engine.Task, ns string, from, to []byte, fn func(key, value []byte) bool) error {
	if err := checkArgs(ns, from); err != nil {
		return err
	}
	m := b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if b.gone {
		return errGone
	}
	sp := space{task, ns}
	inRange := func(k []byte) bool {
		return bytes.Compare(k, from) >= 0 && (to == nil || bytes.Compare(k, to) < 0)
	}
	// The overlay: the newest change of each key in range.
	over := map[string]change{}
	pend := m.pending
	i := slices.Index(pend, b)
	if i < 0 {
		i = len(pend)
	}
	for _, pb := range append(slices.Clone(pend[:i]), b) { // oldest first: later ones win
		for k, c := range pb.changes[sp] {
			if inRange([]byte(k)) {
				over[k] = c
			}
		}
	}
	keys := make([]string, 0, len(over))
	for k := range over {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	// Merge the sorted overlay keys with the base's ascending walk.
	next := 0
	emitOverlayBefore := func(k []byte) bool { // emits overlay keys < k (all if k is nil)
		for next < len(keys) && (k == nil || keys[next] < string(k)) {
			c := over[keys[next]]
			next++
			if !c.del && !fn([]byte(keys[next-1]), c.value) {
				return false
			}
		}
		return true
	}
	goOn := true
	if t := m.base[sp]; t != nil {
		walk := func(e entry) bool {
			if to != nil && bytes.Compare(e.key, to) >= 0 {
				return false
			}
			if goOn = emitOverlayBefore(e.key); !goOn {
				return false
			}
			if next < len(keys) && keys[next] == string(e.key) {
				c := over[keys[next]]
				next++
				if c.del {
					return true
				}
				goOn = fn(e.key, c.value)
				return goOn
			}
			goOn = fn(e.key, e.value)
			return goOn
		}
		t.AscendGreaterOrEqual(entry{key: from}, walk)
	}
	if goOn {
		emitOverlayBefore(nil)
	}
	return nil
}
