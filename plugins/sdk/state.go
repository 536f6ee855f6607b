package sdk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/plugins/internal/wire"
	pluginpb "github.com/sluicehq/sluice/plugins/proto"
)

// Limits of keyed state; a Put beyond them fails (and fails the batch).
const (
	MaxStateKeyBytes   = pluginpb.MaxStateKeyBytes
	MaxStateValueBytes = pluginpb.MaxStateValueBytes
)

// ErrNoState is what the methods of State return in a step that keeps no
// state.
var ErrNoState = errors.New("this step keeps no state: add `state: true` to its plugin step in the pipeline file (state needs delivery: exactly-once)")

// Store is the keyed state of one Process call: State(ctx) returns it. It
// belongs to the pipeline, not to the plugin process: the host keeps it,
// makes it durable with the batch's output, and after a failure or restart
// gives back exactly the state of the last committed batch. So a plugin
// that keeps everything it must remember in the Store counts each record
// once, across crashes and restarts, and keeps nothing in memory.
//
// State is kept per task: a task is a source partition, and a record's task
// is its Partition. A call may read and write only the tasks of its input
// records (all records of one key must therefore come from one partition:
// key the source topic by what you keep state by). Keys are strings (any
// bytes), namespaced by the step: two steps never see each other's keys.
//
// Reads see the committed state, the changes of earlier batches and this
// call's own writes. Writes are kept in the plugin and sent with the
// call's answer, so they cost no round trip; a read the Store has not seen
// costs one, which Prefetch shares between many keys. A Store is only
// valid during its call and, like Process, is not for concurrent use.
//
// Every method returns an error when the state cannot be read or the
// write is refused (a key or value over its limit, a task not in the
// batch); return it from Process. The batch fails even if the error is
// dropped, so that no write is lost silently.
type Store struct {
	ctx     context.Context
	backend stateBackend // nil: the step keeps no state
	tasks   []int32      // of the call's input, sorted
	writes  map[int32]map[string]entry
	reads   map[int32]map[string]entry // host answers, kept for the call
	err     error                      // the first refused write or failed read
}

// entry is a value, or its absence (a deleted or missing key).
type entry struct {
	value []byte
	found bool
}

type stateKey struct{}

// State returns the keyed state of the Process call whose ctx this is. In
// a step without `state: true` every method returns ErrNoState.
func State(ctx context.Context) *Store {
	if s, ok := ctx.Value(stateKey{}).(*Store); ok {
		return s
	}
	return &Store{}
}

// stateBackend is where a Store reads what it has not written: the host
// (over the State service) or Local's memory.
type stateBackend interface {
	// get looks up keys of task; it may answer only the first n of them
	// (n ≥ 1), and the caller asks again for the rest.
	get(ctx context.Context, task int32, keys []string) ([]wire.Value, error)
	// scan returns one page of task's pairs under prefix after after
	// (from the prefix when hasAfter is false), in key order.
	scan(ctx context.Context, task int32, prefix, after string, hasAfter bool) (pairs []wire.Pair, more bool, err error)
}

func newStore(ctx context.Context, b stateBackend, in []Record) *Store {
	s := &Store{ctx: ctx, backend: b}
	for i := range in {
		if !slices.Contains(s.tasks, in[i].Partition) {
			s.tasks = append(s.tasks, in[i].Partition)
		}
	}
	slices.Sort(s.tasks)
	return s
}

// check says why task cannot be used, if it cannot.
func (s *Store) check(task int32) error {
	if s.backend == nil {
		return ErrNoState
	}
	if _, ok := slices.BinarySearch(s.tasks, task); !ok {
		return fmt.Errorf("state of task %d: not a task of this batch (its tasks are %v); use the Partition of one of the batch's records as the task", task, s.tasks)
	}
	return nil
}

// fail records the first error, which fails the batch.
func (s *Store) fail(err error) error {
	if s.err == nil {
		s.err = err
	}
	return err
}

// Get returns the value of key in task's state, and whether there is one.
// The value is read-only and valid until the call returns: copy what you
// keep.
func (s *Store) Get(task int32, key string) ([]byte, bool, error) {
	if err := s.check(task); err != nil {
		return nil, false, s.fail(err)
	}
	if e, ok := s.writes[task][key]; ok {
		return e.value, e.found, nil
	}
	if e, ok := s.reads[task][key]; ok {
		return e.value, e.found, nil
	}
	if err := s.fetch(task, []string{key}); err != nil {
		return nil, false, err
	}
	e := s.reads[task][key]
	return e.value, e.found, nil
}

// Prefetch reads keys of task in as few round trips as possible, so that
// their Gets are answered in the plugin. A transform that reads a key per
// record prefetches the batch's keys first: one round trip per batch
// instead of one per record.
func (s *Store) Prefetch(task int32, keys ...string) error {
	if err := s.check(task); err != nil {
		return s.fail(err)
	}
	var missing []string
	for _, k := range keys {
		_, written := s.writes[task][k]
		_, read := s.reads[task][k]
		if !written && !read {
			missing = append(missing, k)
		}
	}
	slices.Sort(missing)
	missing = slices.Compact(missing)
	return s.fetch(task, missing)
}

// fetch asks the backend for keys and caches the answers.
func (s *Store) fetch(task int32, keys []string) error {
	for len(keys) > 0 {
		n := min(len(keys), pluginpb.MaxStateGetKeys)
		vs, err := s.backend.get(s.ctx, task, keys[:n])
		if err != nil {
			return s.fail(fmt.Errorf("read state of task %d: %w", task, err))
		}
		if len(vs) == 0 || len(vs) > n {
			return s.fail(fmt.Errorf("read state of task %d: the host answered %d values for %d keys", task, len(vs), n))
		}
		if s.reads == nil {
			s.reads = make(map[int32]map[string]entry)
		}
		m := s.reads[task]
		if m == nil {
			m = make(map[string]entry, len(vs))
			s.reads[task] = m
		}
		for i, v := range vs {
			m[keys[i]] = entry{value: v.Data, found: v.Found}
		}
		keys = keys[len(vs):]
	}
	return nil
}

// Put sets key to value in task's state. value is copied; an empty or nil
// value is a value (Get finds it), unlike Delete.
func (s *Store) Put(task int32, key string, value []byte) error {
	if err := s.check(task); err != nil {
		return s.fail(err)
	}
	if len(key) > MaxStateKeyBytes {
		return s.fail(fmt.Errorf("state key of %d bytes is over the limit of %d bytes (%.40q...); keep keys short and put data in the value", len(key), MaxStateKeyBytes, key))
	}
	if len(value) > MaxStateValueBytes {
		return s.fail(fmt.Errorf("state value of %d bytes for key %.40q is over the limit of %d bytes; split it over several keys", len(value), key, MaxStateValueBytes))
	}
	s.write(task, key, entry{value: append(make([]byte, 0, len(value)), value...), found: true})
	return nil
}

// Delete removes key from task's state; deleting a missing key is not an
// error.
func (s *Store) Delete(task int32, key string) error {
	if err := s.check(task); err != nil {
		return s.fail(err)
	}
	if len(key) > MaxStateKeyBytes {
		return nil // no such key can exist
	}
	s.write(task, key, entry{})
	return nil
}

func (s *Store) write(task int32, key string, e entry) {
	if s.writes == nil {
		s.writes = make(map[int32]map[string]entry)
	}
	m := s.writes[task]
	if m == nil {
		m = make(map[string]entry)
		s.writes[task] = m
	}
	m[key] = e
}

// Scan calls fn for each key of task's state that starts with prefix, in
// byte order, with its value, until fn returns false. It visits the state
// as it was when Scan was called: fn may Put and Delete (closing what it
// finds, say) without changing what this Scan visits. Values are
// read-only and valid until the call returns.
func (s *Store) Scan(task int32, prefix string, fn func(key string, value []byte) bool) error {
	if err := s.check(task); err != nil {
		return s.fail(err)
	}
	// This call's own writes under the prefix, merged into the host's pages.
	var own []string
	ownVals := make(map[string]entry)
	for k, e := range s.writes[task] {
		if strings.HasPrefix(k, prefix) {
			own = append(own, k)
			ownVals[k] = e
		}
	}
	slices.Sort(own)
	next := 0
	// emitOwn visits own keys below limit (all when all is true); false
	// when fn asked to stop.
	emitOwn := func(limit string, all bool) bool {
		for ; next < len(own) && (all || own[next] < limit); next++ {
			if e := ownVals[own[next]]; e.found && !fn(own[next], e.value) {
				next++
				return false
			}
		}
		return true
	}
	after, hasAfter := "", false
	for {
		pairs, more, err := s.backend.scan(s.ctx, task, prefix, after, hasAfter)
		if err != nil {
			return s.fail(fmt.Errorf("scan state of task %d: %w", task, err))
		}
		for _, p := range pairs {
			k := string(p.Key)
			if hasAfter && k <= after || !strings.HasPrefix(k, prefix) {
				return s.fail(fmt.Errorf("scan state of task %d: the host answered key %.40q out of order or outside prefix %.40q", task, k, prefix))
			}
			after, hasAfter = k, true
			if !emitOwn(k, false) {
				return nil
			}
			if _, mine := ownVals[k]; mine {
				continue // visited (or deleted) by emitOwn as one of own
			}
			if !fn(k, p.Value) {
				return nil
			}
		}
		if !more || len(pairs) == 0 {
			break
		}
	}
	emitOwn("", true)
	return nil
}

// Task returns the state of one task, for code that works record by
// record: st := sdk.State(ctx).Task(r.Partition).
func (s *Store) Task(task int32) TaskState { return TaskState{s: s, task: task} }

// TaskState is a Store bound to one task; see Store for what its methods
// do.
type TaskState struct {
	s    *Store
	task int32
}

func (t TaskState) Get(key string) ([]byte, bool, error) { return t.s.Get(t.task, key) }
func (t TaskState) Put(key string, value []byte) error   { return t.s.Put(t.task, key, value) }
func (t TaskState) Delete(key string) error              { return t.s.Delete(t.task, key) }
func (t TaskState) Prefetch(keys ...string) error        { return t.s.Prefetch(t.task, keys...) }
func (t TaskState) Scan(prefix string, fn func(key string, value []byte) bool) error {
	return t.s.Scan(t.task, prefix, fn)
}

// appendWrites encodes the call's writes for the host.
func (s *Store) appendWrites(dst []byte) []byte {
	n := 0
	for _, m := range s.writes {
		n += len(m)
	}
	if n == 0 {
		return dst
	}
	dst = wire.AppendWriteCount(dst, n)
	for task, m := range s.writes {
		for k, e := range m {
			dst = wire.AppendWrite(dst, wire.Write{Task: task, Key: []byte(k), Value: e.value, Delete: !e.found})
		}
	}
	return dst
}

// remoteState reads the host's state over the State service.
type remoteState struct {
	client pluginpb.StateClient
	call   uint64
}

func (r remoteState) get(ctx context.Context, task int32, keys []string) ([]wire.Value, error) {
	bk := make([][]byte, len(keys))
	for i, k := range keys {
		bk[i] = []byte(k)
	}
	resp, err := r.client.Get(ctx, &pluginpb.StateGetRequest{Call: r.call, Task: task, Keys: bk})
	if err != nil {
		return nil, err
	}
	return wire.DecodeValues(resp.GetValues())
}

func (r remoteState) scan(ctx context.Context, task int32, prefix, after string, hasAfter bool) ([]wire.Pair, bool, error) {
	resp, err := r.client.Scan(ctx, &pluginpb.StateScanRequest{Call: r.call, Task: task, Prefix: []byte(prefix), After: []byte(after), HasAfter: hasAfter})
	if err != nil {
		return nil, false, err
	}
	pairs, err := wire.DecodePairs(resp.GetEntries())
	return pairs, resp.GetMore(), err
}

// memoryState is Local's state: what the host would keep, in memory.
// Writes of a call are applied when it succeeds, as the host does.
type memoryState struct {
	tasks map[int32]map[string][]byte
}

func (m *memoryState) get(_ context.Context, task int32, keys []string) ([]wire.Value, error) {
	vs := make([]wire.Value, len(keys))
	for i, k := range keys {
		v, ok := m.tasks[task][k]
		vs[i] = wire.Value{Data: v, Found: ok}
	}
	return vs, nil
}

func (m *memoryState) scan(_ context.Context, task int32, prefix, _ string, _ bool) ([]wire.Pair, bool, error) {
	var pairs []wire.Pair
	for k, v := range m.tasks[task] {
		if strings.HasPrefix(k, prefix) {
			pairs = append(pairs, wire.Pair{Key: []byte(k), Value: v})
		}
	}
	slices.SortFunc(pairs, func(a, b wire.Pair) int { return strings.Compare(string(a.Key), string(b.Key)) })
	return pairs, false, nil
}

func (m *memoryState) apply(s *Store) {
	for task, w := range s.writes {
		if m.tasks == nil {
			m.tasks = make(map[int32]map[string][]byte)
		}
		t := m.tasks[task]
		if t == nil {
			t = make(map[string][]byte)
			m.tasks[task] = t
		}
		for k, e := range w {
			if e.found {
				t[k] = e.value
			} else {
				delete(t, k)
			}
		}
	}
}
