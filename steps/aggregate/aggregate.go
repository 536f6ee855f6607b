// Package aggregate is the built-in aggregate step: keyed counts, sums,
// minima, maxima, averages and exact distinct counts, over tumbling,
// sliding or session windows in event or processing time, or as running
// totals. Its state lives in the pipeline's state backend through
// state.View, one namespace per step and task, so it commits with the
// sink's epochs (exactly once) and follows a task to another process.
//
// Event time: each task keeps a watermark, the newest event time it has
// seen minus allowed-lateness, in its state. A window closes when the
// watermark passes its end; a record all of whose windows have closed is
// rejected (dead letters). The watermark advances record by record, so
// what is late does not depend on how the input was cut into batches.
package aggregate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/steps/field"
)

// Options are what the step needs besides its block.
type Options struct {
	// Name is the step's state namespace and the Plugin of the records it
	// rejects: stable across restarts ("aggregate@transforms[2]").
	Name string
	// Now is the clock of processing time; nil = time.Now.
	Now func() time.Time
}

// Aggregate is the step. It keeps no state of its own between batches
// except the tasks it has seen (for processing-time ticks): everything
// else is read from and written to the batch's state.View.
type Aggregate struct {
	name, distinctNS string
	key              field.Key
	time             field.Time
	lateness         int64
	win              windowing
	fns              []function
	everyBatch       bool
	distinct         bool // a count-distinct is among the functions
	now              func() time.Time

	// tasks seen since the step started, for processing-time closing
	// when no records come (Tick).
	tasks map[engine.Task]string
}

var errNoState = errors.New("aggregate: the pipeline has no state backend; the step needs one (components.Build gives it one for a stateful step)")

// New builds the step from a validated block.
func New(c Config, o Options) (*Aggregate, error) {
	key, err := field.ParseKey(c.Key)
	if err != nil {
		return nil, fmt.Errorf("aggregate: key %v", err)
	}
	tm, err := field.ParseTime(c.Time, c.TimeField)
	if err != nil {
		return nil, fmt.Errorf("aggregate: time-field %v", err)
	}
	a := &Aggregate{
		name: o.Name, distinctNS: o.Name + "/distinct", key: key, time: tm,
		lateness: int64(c.AllowedLateness), win: newWindowing(c.Window), now: o.Now,
		everyBatch: c.Emit == "every-batch" || (c.Emit == "" && c.Window == nil),
		tasks:      map[engine.Task]string{},
	}
	if a.now == nil {
		a.now = time.Now
	}
	if len(c.Functions) == 0 || len(c.Functions) > MaxFunctions {
		return nil, fmt.Errorf("aggregate: %d functions; write 1 to %d", len(c.Functions), MaxFunctions)
	}
	for name, src := range c.Functions {
		f, err := parseFunction(src)
		if err != nil {
			return nil, fmt.Errorf("aggregate: functions.%s: %w", name, err)
		}
		f.name = name
		f.quoted = appendJSONString(nil, []byte(name))
		a.fns = append(a.fns, f)
	}
	a.distinct = a.hasDistinct()
	// Output fields in name order, so equal windows encode to equal bytes.
	slices.SortFunc(a.fns, func(x, y function) int { return cmpString(x.name, y.name) })
	return a, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Transform returns the step as the engine runs it: with engine.Ticker
// when its windows close on the clock (processing time), so they close
// when no records come. Event-time windows close only as event time
// advances, which takes records.
func (a *Aggregate) Transform() engine.Transform {
	if a.time.Processing && a.win.kind != windowNone {
		return ticking{a}
	}
	return a
}

type ticking struct{ *Aggregate }

// Tick implements engine.Ticker: a fraction of the window's step, so a
// window closes soon after its end, at most every second.
func (t ticking) Tick() time.Duration {
	a := t.Aggregate
	step := a.win.every
	if a.win.kind == windowSession {
		step = a.win.gap
	}
	return min(time.Second, max(time.Duration(step)/4, tickMin))
}

// tickMin is the shortest tick: a window of a millisecond need not be
// closed more precisely than this.
const tickMin = 10 * time.Millisecond

func (a *Aggregate) Close() error { return nil }

// taskState is one task's view within a batch.
type taskState struct {
	newest int64 // newest event time seen (math.MinInt64: none)
	dirty  bool  // newest changed in this batch
	topic  string
	offset int64
	// tickOnly: no record of the task in this batch; it is closed on the
	// clock because this process saw its records before, and may no
	// longer run it.
	tickOnly bool
}

// batch is one Process call's bookkeeping.
type batch struct {
	v       state.View
	now     int64
	tasks   map[engine.Task]*taskState
	changed []changedWin // every-batch: windows to emit, first change first
	seen    map[string]int
	out     []engine.Record
	rej     []engine.Rejected
	wins    []window // scratch
	ck      []byte   // scratch of changedKey
	slab    []byte   // output keys and values (emit)
	kb      []byte   // scratch of state keys
	ins     []input  // scratch of record
	opens   []open   // scratch of windows
	// pending are the tumbling, sliding or running-total windows the
	// batch changed, first change first, by changedKey in pend; written
	// at the end of the batch. They live as long as the batch, so a
	// Discard or Restore has nothing to invalidate.
	pending []pendingWin
	pend    map[string]int
}

// pendingWin is a window changed in this batch, not yet written.
type pendingWin struct {
	task  engine.Task
	key   []byte
	w     window
	acc   acc
	isNew bool // its close index entry is to be written too
}

// changedWin is a window every-batch emits: its latest accumulator (nil
// once merged into another session), kept so finish need not read it back.
type changedWin struct {
	task  engine.Task
	key   []byte
	start int64
	acc   acc
}

// Process folds in the batch's records and emits what the emit mode says:
// the windows the watermark closed (on-close), or the windows the batch
// changed (every-batch).
func (a *Aggregate) Process(ctx context.Context, in []engine.Record) ([]engine.Record, []engine.Rejected, error) {
	v := state.ViewFrom(ctx)
	if v == nil {
		return nil, nil, errNoState
	}
	b := &batch{v: v, now: a.now().UnixNano(), tasks: map[engine.Task]*taskState{}, seen: map[string]int{},
		pend: make(map[string]int, len(in)), pending: make([]pendingWin, 0, len(in))}
	for i := range in {
		r := &in[i]
		ts, err := a.task(b, engine.Task(r.Partition))
		if err != nil {
			return nil, nil, err
		}
		ts.topic, ts.offset = r.Topic, r.Offset
		reason, err := a.record(b, ts, r)
		if err != nil {
			return nil, nil, err
		}
		if reason != "" {
			b.rej = append(b.rej, engine.Rejected{Record: *r, Reason: reason, Plugin: a.name})
		}
	}
	if a.time.Processing {
		// Close on the clock for every task this process has seen, not
		// only those with records in this batch.
		for t := range a.tasks {
			if b.tasks[t] == nil {
				ts, err := a.task(b, t)
				if err != nil {
					return nil, nil, err
				}
				ts.tickOnly = true
			}
		}
	}
	if err := a.finish(b); err != nil {
		return nil, nil, err
	}
	return b.out, b.rej, nil
}

// task returns t's state in this batch, reading its newest event time.
func (a *Aggregate) task(b *batch, t engine.Task) (*taskState, error) {
	if ts := b.tasks[t]; ts != nil {
		return ts, nil
	}
	ts := &taskState{newest: math.MinInt64, topic: a.tasks[t], offset: -1}
	if !a.time.Processing {
		val, ok, err := b.v.Get(t, a.name, metaKey)
		if err != nil {
			return nil, fmt.Errorf("aggregate: read the watermark of task %d: %w", t, err)
		}
		if ok {
			if len(val) != 8 {
				return nil, errCorrupt
			}
			ts.newest = readTime(val)
		}
	}
	b.tasks[t] = ts
	return ts, nil
}

// watermark is the time up to which task ts's windows are closed.
func (a *Aggregate) watermark(b *batch, ts *taskState) int64 {
	if a.time.Processing {
		return b.now
	}
	if ts.newest == math.MinInt64 {
		return math.MinInt64
	}
	return ts.newest - a.lateness
}

// open is a window a record goes into: its accumulator as read (nil:
// new), or, for a session the record joins with others, those sessions.
type open struct {
	w      window
	acc    acc
	merged []found
}

// found is a session of the key as read from state.
type found struct {
	w   window
	acc acc
}

// record folds r in; a non-empty reason rejects it.
func (a *Aggregate) record(b *batch, ts *taskState, r *engine.Record) (string, error) {
	task := engine.Task(r.Partition)
	doc := field.NewDoc(r.Value)
	k, err := a.key.Of(r, doc)
	if err != nil {
		return err.Error(), nil
	}
	if len(k) > MaxKeyBytes {
		return fmt.Sprintf("the key is %d bytes, over the limit of %d (MaxKeyBytes); aggregate by a shorter field", len(k), MaxKeyBytes), nil
	}
	t, err := a.time.Of(r, doc, time.Unix(0, b.now))
	switch {
	case err != nil && a.win.kind == windowNone:
		// A running total needs no time but for the output's timestamp.
		t = b.now
	case err != nil:
		return err.Error(), nil
	}
	ins := b.ins[:0]
	for range a.fns {
		ins = append(ins, input{})
	}
	b.ins = ins
	for i := range a.fns {
		if ins[i], err = a.fns[i].read(doc); err != nil {
			return err.Error(), nil
		}
		if n := len(k) + len(ins[i].distinct); n > maxDistinctBytes {
			return fmt.Sprintf("%s: the key and value are %d bytes, over the limit of %d that a distinct value can be kept in; count a shorter field", a.fns[i].src, n, maxDistinctBytes), nil
		}
	}
	wm := a.watermark(b, ts)

	opens, reason, err := a.windows(b, task, k, t, wm)
	if err != nil || reason != "" {
		return reason, err
	}
	// Check every limit before changing anything, so a rejected record
	// leaves no trace.
	// Per window, per function: a new distinct value (only with a
	// count-distinct).
	var fresh [][]bool
	if a.distinct {
		fresh = make([][]bool, len(opens))
	}
	for wi := range fresh {
		fresh[wi] = make([]bool, len(a.fns))
		for fi := range a.fns {
			if a.fns[fi].op != opCountDistinct {
				continue
			}
			if fresh[wi][fi], reason, err = a.fresh(b, task, k, &opens[wi], fi, ins[fi].distinct); err != nil || reason != "" {
				return reason, err
			}
		}
	}
	for wi := range opens {
		o := &opens[wi]
		isNew := o.acc == nil
		if isNew {
			o.acc = newAcc(o.w.end, len(a.fns))
		}
		for _, m := range o.merged {
			if err := a.mergeInto(b, task, k, o.acc, o.w.start, m); err != nil {
				return "", err
			}
		}
		o.acc.seen(t)
		for fi := range a.fns {
			f := &a.fns[fi]
			if f.op == opCountDistinct {
				if !fresh[wi][fi] {
					continue
				}
				dk := distinctKey(distinctPrefix(k, o.w.start), fi, ins[fi].distinct)
				if err := b.v.Put(task, a.distinctNS, dk, present); err != nil {
					return "", fmt.Errorf("aggregate: write task %d: %w", task, err)
				}
			}
			f.add(o.acc.slot(fi), ins[fi])
		}
		if err := a.write(b, task, k, o, isNew); err != nil {
			return "", err
		}
	}
	if t > ts.newest && !a.time.Processing {
		ts.newest, ts.dirty = t, true
	}
	return "", nil
}

// fresh reports whether value v of count-distinct fi is new to window o,
// or the reason to reject the record when it would pass
// MaxDistinctPerWindow. For sessions being merged, a value is new if none
// of them holds it, and their summed counts bound the merged count.
func (a *Aggregate) fresh(b *batch, task engine.Task, k []byte, o *open, fi int, v []byte) (bool, string, error) {
	sessions := o.merged
	if sessions == nil {
		sessions = []found{{w: o.w, acc: o.acc}}
	}
	var n uint64
	for _, s := range sessions {
		if s.acc == nil {
			continue
		}
		_, ok, err := b.v.Get(task, a.distinctNS, distinctKey(distinctPrefix(k, s.w.start), fi, v))
		if err != nil {
			return false, "", fmt.Errorf("aggregate: read task %d: %w", task, err)
		}
		if ok {
			return false, "", nil
		}
		n += count(s.acc.slot(fi))
	}
	if n >= MaxDistinctPerWindow {
		return false, fmt.Sprintf("%s: the window %s of key %q already holds %d distinct values, the limit (MaxDistinctPerWindow); use a shorter window", a.fns[fi].src, a.windowText(o.w), k, n), nil
	}
	return true, "", nil
}

// windows returns the open windows record time t of key k goes into, with
// their accumulators, or the reason it is late.
func (a *Aggregate) windows(b *batch, task engine.Task, k []byte, t, wm int64) ([]open, string, error) {
	b.wins = a.win.assign(b.wins[:0], t)
	if a.win.kind == windowSession {
		return a.session(b, task, k, b.wins[0], wm)
	}
	opens := b.opens[:0]
	defer func() { b.opens = opens[:0] }()
	for _, w := range b.wins {
		if a.win.kind != windowNone && w.end <= wm {
			continue // closed: the watermark passed it
		}
		if i, ok := b.pend[string(b.changedKey(task, k, w.start))]; ok {
			opens = append(opens, open{w: w, acc: b.pending[i].acc})
			continue
		}
		b.kb = appendTime(appendKey(append(b.kb[:0], tagAcc), k), w.start)
		ac, err := a.read(b, task, b.kb)
		if err != nil {
			return nil, "", err
		}
		opens = append(opens, open{w: w, acc: ac})
	}
	if len(opens) == 0 {
		return nil, a.late(t, wm, b.wins[len(b.wins)-1]), nil
	}
	return opens, "", nil
}

// late is the reason a record whose windows all closed is rejected.
func (a *Aggregate) late(t, wm int64, w window) string {
	return fmt.Sprintf("late: event time %s is in window %s, closed since the watermark (newest event time - allowed-lateness %s) reached %s; raise allowed-lateness to keep such records",
		rfc3339(t), a.windowText(w), time.Duration(a.lateness), rfc3339(wm))
}

// session finds the open sessions of k that own, [t, t+gap), touches: none
// (a new session), one that holds it, or several (or one that it extends)
// to merge into their union.
func (a *Aggregate) session(b *batch, task engine.Task, k []byte, own window, wm int64) ([]open, string, error) {
	if own.end <= wm {
		return nil, a.late(own.start, wm, own), nil
	}
	var touching []found
	openCount := 0
	var scanErr error
	prefix := accPrefix(k)
	err := b.v.Scan(task, a.name, prefix, prefixEnd(prefix), func(key, value []byte) bool {
		ac := acc(value)
		if len(key) != len(prefix)+8 || !ac.valid(len(a.fns)) {
			scanErr = errCorrupt
			return false
		}
		w := window{start: readTime(key[len(prefix):]), end: ac.end()}
		if w.end <= wm {
			return true // closed, not yet emitted: never reopened
		}
		openCount++
		if w.start <= own.end && w.end >= own.start {
			touching = append(touching, found{w, ac.clone()})
		}
		return true
	})
	if err == nil {
		err = scanErr
	}
	if err != nil {
		return nil, "", fmt.Errorf("aggregate: read task %d: %w", task, err)
	}
	switch len(touching) {
	case 0:
		if openCount >= MaxOpenWindowsPerKey {
			return nil, fmt.Sprintf("key %q already has %d open sessions, the limit (MaxOpenWindowsPerKey); shorten the gap or allowed-lateness", k, openCount), nil
		}
		return []open{{w: own}}, "", nil
	case 1:
		if f := touching[0]; own.start >= f.w.start && own.end <= f.w.end {
			return []open{{w: f.w, acc: f.acc}}, "", nil
		}
	}
	u := own
	for _, f := range touching {
		u.start, u.end = min(u.start, f.w.start), max(u.end, f.w.end)
	}
	return []open{{w: u, merged: touching}}, "", nil
}

// mergeInto folds session m (its accumulator and distinct values) into
// dst, the accumulator of the session starting at start.
func (a *Aggregate) mergeInto(b *batch, task engine.Task, k []byte, dst acc, start int64, m found) error {
	dst.seen(m.acc.latest())
	for fi := range a.fns {
		if a.fns[fi].op != opCountDistinct || m.w.start == start {
			// A session that keeps its start keeps its distinct values
			// where they are, and their count.
			a.fns[fi].merge(dst.slot(fi), m.acc.slot(fi))
		}
	}
	if !a.hasDistinct() || m.w.start == start {
		return nil
	}
	from := distinctPrefix(k, m.w.start)
	var moved [][]byte
	err := b.v.Scan(task, a.distinctNS, from, prefixEnd(from), func(key, _ []byte) bool {
		moved = append(moved, bytes.Clone(key[len(from):]))
		return true
	})
	if err != nil {
		return fmt.Errorf("aggregate: read task %d: %w", task, err)
	}
	to := distinctPrefix(k, start)
	for _, rest := range moved {
		nk := append(slices.Clip(to), rest...)
		_, ok, err := b.v.Get(task, a.distinctNS, nk)
		if err != nil {
			return fmt.Errorf("aggregate: read task %d: %w", task, err)
		}
		if !ok {
			if err := b.v.Put(task, a.distinctNS, nk, present); err != nil {
				return fmt.Errorf("aggregate: write task %d: %w", task, err)
			}
			a.fns[rest[0]].add(dst.slot(int(rest[0])), input{})
		}
		if err := b.v.Delete(task, a.distinctNS, append(slices.Clip(from), rest...)); err != nil {
			return fmt.Errorf("aggregate: write task %d: %w", task, err)
		}
	}
	return nil
}

func (a *Aggregate) hasDistinct() bool {
	for i := range a.fns {
		if a.fns[i].op == opCountDistinct {
			return true
		}
	}
	return false
}

// read returns a copy of the accumulator at key, nil if none.
func (a *Aggregate) read(b *batch, task engine.Task, key []byte) (acc, error) {
	val, ok, err := b.v.Get(task, a.name, key)
	if err != nil {
		return nil, fmt.Errorf("aggregate: read task %d: %w", task, err)
	}
	if !ok {
		return nil, nil
	}
	if !acc(val).valid(len(a.fns)) {
		return nil, errCorrupt
	}
	return acc(val).clone(), nil
}

// write stores o's accumulator, its close index entry, and removes the
// sessions merged into it.
func (a *Aggregate) write(b *batch, task engine.Task, k []byte, o *open, isNew bool) error {
	if a.win.kind != windowSession {
		// Kept until the batch ends (flush): a key's windows take one Put
		// per batch, not one per record. Sessions write through, since
		// finding them scans the state.
		ck := b.changedKey(task, k, o.w.start)
		if _, ok := b.pend[string(ck)]; !ok {
			b.pend[string(ck)] = len(b.pending)
			b.pending = append(b.pending, pendingWin{task: task, key: bytes.Clone(k), w: o.w, acc: o.acc, isNew: isNew})
		}
		return nil
	}
	for _, m := range o.merged {
		if err := b.v.Delete(task, a.name, accKey(k, m.w.start)); err != nil {
			return fmt.Errorf("aggregate: write task %d: %w", task, err)
		}
		if err := b.v.Delete(task, a.name, closeKey(m.w.end, k, m.w.start)); err != nil {
			return fmt.Errorf("aggregate: write task %d: %w", task, err)
		}
	}
	if err := b.v.Put(task, a.name, accKey(k, o.w.start), o.acc); err != nil {
		return fmt.Errorf("aggregate: write task %d: %w", task, err)
	}
	if a.win.kind != windowNone && (isNew || len(o.merged) > 0) {
		if err := b.v.Put(task, a.name, closeKey(o.w.end, k, o.w.start), present); err != nil {
			return fmt.Errorf("aggregate: write task %d: %w", task, err)
		}
	}
	if a.everyBatch {
		for _, m := range o.merged {
			if i, ok := b.seen[string(b.changedKey(task, k, m.w.start))]; ok {
				b.changed[i].acc = nil
			}
		}
		ck := b.changedKey(task, k, o.w.start)
		if i, ok := b.seen[string(ck)]; ok {
			b.changed[i].acc = o.acc
		} else {
			b.seen[string(ck)] = len(b.changed)
			b.changed = append(b.changed, changedWin{task: task, key: bytes.Clone(k), start: o.w.start, acc: o.acc})
		}
	}
	return nil
}

// changedKey names a window of a task in b.seen.
func (b *batch) changedKey(task engine.Task, k []byte, start int64) []byte {
	b.ck = binary.BigEndian.AppendUint32(appendTime(appendKey(b.ck[:0], k), start), uint32(task))
	return b.ck
}

// finish persists each task's watermark, emits the changed windows
// (every-batch) and closes the windows the watermark passed.
func (a *Aggregate) finish(b *batch) error {
	tasks := make([]engine.Task, 0, len(b.tasks))
	for t := range b.tasks {
		tasks = append(tasks, t)
	}
	slices.Sort(tasks)
	for _, t := range tasks {
		ts := b.tasks[t]
		if ts.topic != "" {
			a.tasks[t] = ts.topic
		} else if _, ok := a.tasks[t]; !ok {
			a.tasks[t] = ""
		}
		if ts.dirty {
			if err := b.v.Put(t, a.name, metaKey, appendTime(nil, ts.newest)); err != nil {
				return fmt.Errorf("aggregate: write task %d: %w", t, err)
			}
		}
	}
	if err := a.flush(b); err != nil {
		return err
	}
	if a.everyBatch {
		b.out = slices.Grow(b.out, len(b.pending))
		for _, p := range b.pending {
			a.emit(b, p.task, p.key, p.w, p.acc)
		}
	}
	for _, c := range b.changed {
		if c.acc != nil { // nil: merged into another session since
			a.emit(b, c.task, c.key, c.acc.window(c.start), c.acc)
		}
	}
	if a.win.kind == windowNone {
		return nil
	}
	for _, t := range tasks {
		if err := a.closeTask(b, t, b.tasks[t]); err != nil {
			return err
		}
	}
	return nil
}

// flush writes the windows the batch changed (write), with the close
// index entries of the new ones, before windows are closed.
func (a *Aggregate) flush(b *batch) error {
	for _, p := range b.pending {
		if err := b.v.Put(p.task, a.name, accKey(p.key, p.w.start), p.acc); err != nil {
			return fmt.Errorf("aggregate: write task %d: %w", p.task, err)
		}
		if p.isNew && a.win.kind != windowNone {
			if err := b.v.Put(p.task, a.name, closeKey(p.w.end, p.key, p.w.start), present); err != nil {
				return fmt.Errorf("aggregate: write task %d: %w", p.task, err)
			}
		}
	}
	return nil
}

// closeTask closes task t's windows that end at or before its watermark.
func (a *Aggregate) closeTask(b *batch, t engine.Task, ts *taskState) error {
	wm := a.watermark(b, ts)
	if wm == math.MinInt64 {
		return nil
	}
	var closing [][]byte
	err := b.v.Scan(t, a.name, []byte{tagClose}, appendTime([]byte{tagClose}, sat(wm, 1)), func(key, _ []byte) bool {
		closing = append(closing, bytes.Clone(key))
		return true
	})
	if err != nil && ts.tickOnly {
		// The task moved to another process (its state is not here any
		// more): it is that process's to close. Nothing was written yet.
		delete(a.tasks, t)
		return nil
	}
	if err != nil {
		return fmt.Errorf("aggregate: read task %d: %w", t, err)
	}
	for _, ck := range closing {
		_, k, start, err := parseClose(ck)
		if err != nil {
			return err
		}
		ak := accKey(k, start)
		ac, err := a.read(b, t, ak)
		if err != nil {
			return err
		}
		if ac != nil && !a.everyBatch {
			a.emit(b, t, k, ac.window(start), ac)
		}
		if err := a.drop(b, t, k, start, ak, ck); err != nil {
			return err
		}
	}
	return nil
}

// drop deletes a closed window: accumulator, index entry, distinct values.
func (a *Aggregate) drop(b *batch, t engine.Task, k []byte, start int64, ak, ck []byte) error {
	if err := b.v.Delete(t, a.name, ak); err != nil {
		return fmt.Errorf("aggregate: write task %d: %w", t, err)
	}
	if err := b.v.Delete(t, a.name, ck); err != nil {
		return fmt.Errorf("aggregate: write task %d: %w", t, err)
	}
	if !a.hasDistinct() {
		return nil
	}
	p := distinctPrefix(k, start)
	var keys [][]byte
	if err := b.v.Scan(t, a.distinctNS, p, prefixEnd(p), func(key, _ []byte) bool {
		keys = append(keys, bytes.Clone(key))
		return true
	}); err != nil {
		return fmt.Errorf("aggregate: read task %d: %w", t, err)
	}
	for _, dk := range keys {
		if err := b.v.Delete(t, a.distinctNS, dk); err != nil {
			return fmt.Errorf("aggregate: write task %d: %w", t, err)
		}
	}
	return nil
}

// emit appends the output record of window w of key k.
func (a *Aggregate) emit(b *batch, t engine.Task, k []byte, w window, ac acc) {
	ts := b.tasks[t]
	// Keys and values are cut from one buffer per batch (the engine owns
	// them together once Process returns), not allocated one by one.
	start := len(b.slab)
	if cap(b.slab)-start < 2*len(k)+maxOutputOverhead+len(a.fns)*maxFunctionOutput {
		b.slab, start = make([]byte, 0, max(slabBytes, 2*len(k)+maxOutputOverhead+len(a.fns)*maxFunctionOutput)), 0
	}
	buf := append(b.slab, k...)
	key := buf[start:len(buf):len(buf)]
	vstart := len(buf)
	buf = append(buf, `{"key":`...)
	buf = appendJSONString(buf, k)
	at := ac.latest()
	if a.win.kind != windowNone {
		buf = append(buf, `,"window_start":"`...)
		buf = appendRFC3339(buf, w.start)
		buf = append(buf, `","window_end":"`...)
		buf = appendRFC3339(buf, w.end)
		buf = append(buf, '"')
		at = w.end
	}
	for fi := range a.fns {
		buf = append(buf, ',')
		buf = append(buf, a.fns[fi].quoted...)
		buf = append(buf, ':')
		buf = a.fns[fi].appendJSON(buf, ac.slot(fi))
	}
	buf = append(buf, '}')
	b.slab = buf
	rec := engine.Record{Partition: int32(t), Key: key, Value: buf[vstart:len(buf):len(buf)], Time: time.Unix(0, at).UTC(), Offset: -1}
	if ts != nil {
		rec.Topic, rec.Offset = ts.topic, ts.offset
	}
	b.out = append(b.out, rec)
}

// The output buffer: slabBytes per allocation, and room for the fixed
// text of a record (braces, key and window fields with two RFC 3339
// times) and for each function's name and number, so a record never
// outgrows the slab it starts in (a longer one reallocates, which is only
// slower).
const (
	slabBytes         = 256 << 10
	maxOutputOverhead = 128
	maxFunctionOutput = 64
)

func appendRFC3339(b []byte, t int64) []byte {
	return time.Unix(0, t).UTC().AppendFormat(b, time.RFC3339Nano)
}

// windowText names a window in a message.
func (a *Aggregate) windowText(w window) string {
	return "[" + rfc3339(w.start) + ", " + rfc3339(w.end) + ")"
}

func rfc3339(t int64) string { return time.Unix(0, t).UTC().Format(time.RFC3339Nano) }
