package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/engine"
)

// closeFlushTimeout bounds how long Close waits for the tombstones still on
// their way: they only let compaction drop deleted keys (a deletion is in
// the changelog already), so a stop does not wait long for them.
const closeFlushTimeout = 5 * time.Second

// Options configure a durable backend.
type Options struct {
	// DataDir is the process's data directory: each task's store is
	// DataDir/state/Pipeline/TASK.
	DataDir  string
	Pipeline string
	// Kafka reaches the cluster of the pipeline's source, where the
	// changelog topic lives; nil keeps the state local only (a source that
	// is not Kafka): it survives restarts, not the loss of the directory,
	// and tasks cannot move to another process.
	Kafka  []kgo.Opt
	Logger *slog.Logger
	// Metrics receives the state's gauges; nil = unregistered collectors.
	Metrics *Metrics
}

// Dir returns the directory of pipeline's local state under dataDir.
func Dir(dataDir, pipeline string) string { return filepath.Join(dataDir, "state", pipeline) }

// Durable is the engine.StateBackend of a pipeline whose state must
// survive: a local store per task, written at each Prepare, and (with
// Kafka) a changelog topic written before it, from which a task restores
// when its store is missing, stale or behind (docs/ARCHITECTURE.md,
// "State").
type Durable struct {
	opts Options
	dir  string
	log  *slog.Logger
	m    *Metrics
	cl   *changelog // nil: local only

	ov overlay

	// stores and running are written by the loop (Restore, Prepare,
	// Close) and read by the intake's views and by Sizes: guarded by mu.
	mu      sync.RWMutex
	stores  map[engine.Task]*store
	running map[engine.Task]bool // nil: every task (one epoch chain)

	// deleted holds the keys that committed batches deleted, for the
	// tombstones to write once they are committed; loop only.
	closed bool
}

// Open opens pipeline's state. ctx bounds only the opening.
func Open(ctx context.Context, opts Options) (*Durable, error) {
	if opts.Pipeline == "" || opts.DataDir == "" {
		return nil, errors.New("state: a pipeline name and a data directory are required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	m := opts.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	d := &Durable{opts: opts, dir: Dir(opts.DataDir, opts.Pipeline), log: log.With("pipeline", opts.Pipeline), m: m,
		stores: map[engine.Task]*store{}}
	d.ov.base = d
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return nil, fmt.Errorf("state: %w; pass --data with a writable directory", err)
	}
	if opts.Kafka != nil {
		cl, err := newChangelog(opts.Pipeline, opts.Kafka, d.log)
		if err != nil {
			return nil, err
		}
		d.cl = cl
	}
	return d, nil
}

// storeOf returns task t's open store, nil if not open.
func (d *Durable) storeOf(t engine.Task) *store {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.stores[t]
}

func (d *Durable) get(t engine.Task, k, dst []byte) ([]byte, bool, error) {
	s := d.storeOf(t)
	if s == nil {
		return dst, false, d.notRunning(t)
	}
	return s.get(k, dst)
}

func (d *Durable) scan(t engine.Task, from, to []byte, fn func(k, v []byte) bool) error {
	s := d.storeOf(t)
	if s == nil {
		return d.notRunning(t)
	}
	return s.scan(from, to, fn)
}

// notRunning is the error for a task without an open store: nil in one
// epoch chain (a task seen for the first time: its state is empty and its
// store is opened at Prepare), an error for a task another process runs.
func (d *Durable) notRunning(t engine.Task) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.running == nil || d.running[t] {
		return nil
	}
	return fmt.Errorf("state: task %d is not run by this process; a stateful step must keep the state of a record under its own partition's task (engine.TaskOf), or be preceded by repartition", t)
}

// openTask opens task t's store, rebuilding an unreadable one when the
// changelog can refill it.
func (d *Durable) openTask(t engine.Task) (*store, error) {
	if s := d.storeOf(t); s != nil {
		return s, nil
	}
	dir := filepath.Join(d.dir, t.String())
	s, err := openStore(dir, t)
	if errors.Is(err, errUnreadable) {
		if d.cl == nil {
			return nil, fmt.Errorf("%w; without a changelog it cannot be rebuilt: move %s away to start this task's state empty", err, dir)
		}
		d.log.Warn("state: local store unreadable; rebuilding it from the changelog", "task", t, "err", err)
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("state: remove %s: %w", dir, err)
		}
		s, err = openStore(dir, t)
	}
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.stores[t] = s
	d.mu.Unlock()
	return s, nil
}

// rebuild empties task t's store, to be refilled from the changelog.
func (d *Durable) rebuild(s *store, why string) (*store, error) {
	d.log.Warn("state: rebuilding the local store from the changelog", "task", s.task, "reason", why)
	d.mu.Lock()
	delete(d.stores, s.task)
	d.mu.Unlock()
	if err := s.remove(); err != nil {
		return nil, fmt.Errorf("state: remove %s: %w", s.dir, err)
	}
	return d.openTask(s.task)
}

// closeTask closes task t's store (it moved to another process); its
// files stay, and are caught up from the changelog if it comes back.
func (d *Durable) closeTask(t engine.Task) {
	d.mu.Lock()
	s := d.stores[t]
	delete(d.stores, t)
	d.mu.Unlock()
	if s != nil {
		s.close()
		d.m.forget(d.opts.Pipeline, t)
	}
}

// localTasks lists the tasks that have a store in the data directory.
func (d *Durable) localTasks() ([]engine.Task, error) {
	ents, err := os.ReadDir(d.dir)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("state: %w", err)
	}
	var out []engine.Task
	for _, e := range ents {
		if n, err := strconv.ParseInt(e.Name(), 10, 32); err == nil && e.IsDir() && n >= 0 {
			out = append(out, engine.Task(n))
		}
	}
	return out, nil
}

// Restore implements engine.StateBackend: each task's store is brought to
// the epoch the sink committed for it (docs/ARCHITECTURE.md, "State").
func (d *Durable) Restore(ctx context.Context, tasks []engine.Task, committed func(engine.Task) uint64) error {
	start := time.Now()
	d.ov.discard()
	run := tasks
	if tasks == nil {
		// One epoch chain: every task with state, here or (below) in the
		// changelog.
		local, err := d.localTasks()
		if err != nil {
			return err
		}
		run = local
		if d.cl == nil && len(local) == 0 && committed(0) > 0 {
			// Without a changelog nothing can tell a new stateful step
			// from a lost data directory; say which it must be.
			d.log.Warn("state: none kept in the data directory, but the sink has committed epochs: the state starts empty; right if the stateful step is new, but if the data directory was lost its state is lost with it and aggregates restart from zero",
				"dir", d.dir, "epoch", committed(0))
		}
	}
	var start0, end map[int32]int64
	if d.cl != nil {
		// Nothing this process produced may land after what is read now.
		if err := d.cl.settle(ctx); err != nil {
			return err
		}
		need := int32(1)
		for _, t := range run {
			need = max(need, int32(t)+1)
		}
		if err := d.cl.ensure(ctx, need); err != nil {
			return err
		}
		var err error
		if start0, end, err = d.cl.bounds(ctx); err != nil {
			return err
		}
	}
	if tasks == nil {
		for p, e := range end {
			if e > start0[p] && !slices.Contains(run, engine.Task(p)) {
				run = append(run, engine.Task(p))
			}
		}
		slices.Sort(run)
	}
	// Tasks no longer run here let go of their stores.
	d.mu.Lock()
	var gone []engine.Task
	for t := range d.stores {
		if tasks != nil && !slices.Contains(tasks, t) {
			gone = append(gone, t)
		}
	}
	if tasks == nil {
		d.running = nil
	} else {
		d.running = map[engine.Task]bool{}
		for _, t := range tasks {
			d.running[t] = true
		}
	}
	d.mu.Unlock()
	for _, t := range gone {
		d.closeTask(t)
	}
	var records int64
	for _, t := range run {
		n, err := d.restoreTask(ctx, t, committed(t), start0, end)
		records += n
		if err != nil {
			return err
		}
	}
	d.m.restored(d.opts.Pipeline, time.Since(start), records)
	d.gauge()
	d.log.Info("state restored", "tasks", run, "records", records, "took", time.Since(start))
	return nil
}

// restoreTask brings task t's store to committed and returns how many
// changelog records it read.
func (d *Durable) restoreTask(ctx context.Context, t engine.Task, committed uint64, start, end map[int32]int64) (int64, error) {
	s, err := d.openTask(t)
	if err != nil {
		return 0, err
	}
	if d.cl == nil {
		switch {
		case s.epoch > committed+1:
			return 0, fmt.Errorf("state: task %d: %w: its local store is at epoch %d and the sink at %d (the sink's checkpoint was reset?); move %s away to start the state empty, or restore the sink",
				t, errAhead, s.epoch, committed, s.dir)
		case s.epoch == committed+1:
			// Prepared, never committed: put back what it replaced.
			if err := s.revert(committed, false); err != nil {
				return 0, err
			}
		}
		return 0, s.settle(committed, 0)
	}

	p := int32(t)
	switch {
	case s.epoch > committed+1:
		s, err = d.rebuild(s, fmt.Sprintf("local store at epoch %d, the sink committed %d", s.epoch, committed))
	case s.offset > end[p]:
		s, err = d.rebuild(s, fmt.Sprintf("local store read the changelog up to offset %d, which ends at %d (was it deleted and created again?)", s.offset, end[p]))
	case !s.written.IsZero() && time.Since(s.written) > staleStoreAge:
		s, err = d.rebuild(s, fmt.Sprintf("local store last caught up %s ago; compaction may have dropped deletions since", time.Since(s.written).Round(time.Second)))
	}
	if err != nil {
		return 0, err
	}
	from := s.offset
	if s.epoch == committed+1 {
		// Prepared, never committed: its records are read again, from
		// the first, and put back the values they carry as replaced
		// (then corrected below).
		from = s.undoFrom
	}
	if from < start[p] {
		if from > 0 {
			d.log.Warn("state: the changelog no longer holds the records after the local store's position; reading from its start", "task", t, "offset", from, "start", start[p])
		}
		from = start[p]
	}
	var n int64
	err = d.cl.read(ctx, map[int32]int64{p: from}, map[int32]int64{p: end[p]}, func(_ int32, recs []logRecord) error {
		n += int64(len(recs))
		return s.applyLog(recs, committed)
	})
	if errors.Is(err, errAhead) {
		return n, fmt.Errorf("%w; delete the changelog topic %s and %s to start the state empty, or restore the sink", err, d.cl.topic, s.dir)
	}
	if err != nil {
		return n, err
	}
	// Keys put back are written again at the committed epoch, so a later
	// commit of that epoch number by another attempt cannot bring the
	// abandoned values back.
	fixes, err := s.fixes()
	if err != nil {
		return n, err
	}
	offset := end[p]
	if len(fixes) > 0 {
		var pr produced
		for _, f := range fixes {
			c := logChange{epoch: committed, deleted: f.deleted, value: f.value, hasPrev: !f.deleted, prev: f.value}
			d.cl.produce(ctx, &pr, t, f.key, encodeChange(nil, c))
		}
		if err := d.cl.flush(ctx, &pr); err != nil {
			return n, err
		}
		offset = max(offset, pr.next[t])
		d.log.Info("state: reverted changes of an epoch the sink did not commit", "task", t, "keys", len(fixes), "epoch", committed+1)
	}
	return n, s.settle(committed, offset)
}

// Begin implements engine.StateBackend.
func (d *Durable) Begin(ctx context.Context) (context.Context, engine.StateBatch) {
	c, v := d.ov.begin()
	return WithView(ctx, v), &durableBatch{d: d, c: c}
}

// Discard implements engine.StateBackend.
func (d *Durable) Discard() { d.ov.discard() }

// Close flushes the tombstones still on their way and closes the stores.
func (d *Durable) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	d.ov.discard()
	if d.cl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), closeFlushTimeout)
		d.cl.cl.Flush(ctx)
		cancel()
		d.cl.close()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for t, s := range d.stores {
		errs = append(errs, s.close())
		d.m.forget(d.opts.Pipeline, t)
	}
	clear(d.stores)
	return errors.Join(errs...)
}

// Size is one task's state size.
type Size struct {
	Keys  int64 `json:"keys"`
	Bytes int64 `json:"bytes"` // keys and values, as stored
}

// Sizes returns the size of each task's state this process holds. Safe
// from any goroutine.
func (d *Durable) Sizes() map[engine.Task]Size {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make(map[engine.Task]Size, len(d.stores))
	for t, s := range d.stores {
		out[t] = Size{Keys: s.keys.Load(), Bytes: s.bytes.Load()}
	}
	return out
}

// gauge sets the size gauges of every open store.
func (d *Durable) gauge() {
	for t, sz := range d.Sizes() {
		d.m.size(d.opts.Pipeline, t, sz)
	}
}

// durableBatch is one batch's state changes.
type durableBatch struct {
	d        *Durable
	c        *changes
	prepared bool
}

// Empty implements engine.StateBatch.
func (b *durableBatch) Empty() bool { return b.d.ov.empty(b.c) }

// Prepare writes the batch's changes to the changelog (waiting for the
// brokers' acknowledgement) and then to each task's store.
func (b *durableBatch) Prepare(ctx context.Context, epoch func(engine.Task) uint64) error {
	d := b.d
	if !d.ov.oldest(b.c) {
		return errors.New("state: Prepare of a batch that is not the oldest uncommitted one (or was discarded)")
	}
	tasks := b.c.taskList()
	type taskWrites struct {
		s     *store
		ws    []write
		prevs []prev
	}
	all := make([]taskWrites, 0, len(tasks))
	for _, t := range tasks {
		if err := d.notRunning(t); err != nil {
			return err
		}
		s, err := d.openTask(t)
		if err != nil {
			return err
		}
		all = append(all, taskWrites{s: s, ws: b.c.writes(t)})
	}
	// The values the batch replaces: the committed ones (the batch before
	// it is committed, and only the loop writes the stores).
	for i := range all {
		var err error
		if all[i].prevs, err = all[i].s.prevs(all[i].ws); err != nil {
			return err
		}
	}
	var pr produced
	if d.cl != nil && len(tasks) > 0 {
		if err := d.cl.ensure(ctx, int32(tasks[len(tasks)-1])+1); err != nil {
			return err
		}
		for _, tw := range all {
			e := epoch(tw.s.task)
			// One buffer for the task's record values and one slice of
			// records, instead of allocations per key; they are the
			// producer's until the flush below.
			size := 0
			for i, w := range tw.ws {
				size += changeOverhead + len(w.value) + len(tw.prevs[i].value)
			}
			buf := make([]byte, 0, size)
			recs := make([]kgo.Record, len(tw.ws))
			for i, w := range tw.ws {
				c := logChange{epoch: e, deleted: w.deleted, value: w.value, hasPrev: tw.prevs[i].ok, prev: tw.prevs[i].value}
				start := len(buf)
				buf = encodeChange(buf, c)
				recs[i].Key, recs[i].Value = w.key, buf[start:len(buf):len(buf)]
			}
			d.cl.produceAll(ctx, &pr, tw.s.task, recs)
		}
		if err := d.cl.flush(ctx, &pr); err != nil {
			return err
		}
	}
	if testHookAfterChangelog != nil {
		if err := testHookAfterChangelog(); err != nil {
			return err
		}
	}
	// Each task's store is its own file with its own fsync: written side
	// by side, a batch waits for the slowest disk write, not their sum.
	var g errgroup.Group
	for _, tw := range all {
		e, first, next := epoch(tw.s.task), pr.first[tw.s.task], pr.next[tw.s.task]
		// With a changelog the undo is the changelog's own records of
		// the epoch (re-read from first); without, the store keeps it.
		g.Go(func() error { return tw.s.prepare(e, first, next, tw.ws, tw.prevs, d.cl == nil) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, tw := range all {
		d.m.size(d.opts.Pipeline, tw.s.task, Size{Keys: tw.s.keys.Load(), Bytes: tw.s.bytes.Load()})
	}
	b.prepared = true
	return nil
}

// testHookAfterChangelog, when set, runs between the changelog's flush and
// the local stores' writes; an error stops Prepare there (a crash).
var testHookAfterChangelog func() error

// Committed drops the batch from the overlay (its changes are in the
// stores) and writes tombstones for the keys it deleted, now that their
// deletion is committed, so compaction can drop them.
func (b *durableBatch) Committed() {
	d := b.d
	d.ov.drop(b.c)
	if d.cl == nil || !b.prepared {
		return
	}
	for t, byNS := range b.c.tasks {
		for ns, keys := range byNS {
			for k, p := range keys {
				if p.deleted {
					d.cl.produce(context.Background(), nil, t, storeKey(nil, ns, []byte(k)), nil)
				}
			}
		}
	}
}
