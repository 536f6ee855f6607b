package state

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/sluicehq/sluice/engine"
)

// The overlay: changes of batches begun and not yet committed, over the
// committed state (base). A batch's View reads its own changes, then those
// of the batches begun before it (newest first), then the base.
//
// Who touches what: a batch's View runs on the intake, one batch at a time
// and in the order begun; Prepare, Committed and Discard run on the loop.
// A batch's changes are written only by its View, before the batch is
// handed to the loop; the list of batches and the changes maps are guarded
// by mu all the same, since a later batch's View reads the earlier
// batches' changes while the loop prepares and drops them.

// base is the committed state an overlay reads through.
type base interface {
	// get appends key k's value (a storeKey) to dst.
	get(task engine.Task, k, dst []byte) ([]byte, bool, error)
	// scan calls fn for each store key in [from, to) (to nil: no end),
	// in order, until fn returns false; it holds nothing fn could wait on.
	scan(task engine.Task, from, to []byte, fn func(k, v []byte) bool) error
}

type overlay struct {
	base base

	mu      sync.RWMutex
	batches []*changes // begun and not committed, oldest first
}

// pending is one key's change in a batch.
type pending struct {
	value   []byte
	deleted bool
}

// changes is one batch's changes: task -> namespace -> key -> change.
type changes struct {
	tasks map[engine.Task]map[string]map[string]pending
}

// begin adds a batch and returns its view.
func (o *overlay) begin() (*changes, *view) {
	c := &changes{tasks: map[engine.Task]map[string]map[string]pending{}}
	o.mu.Lock()
	o.batches = append(o.batches, c)
	o.mu.Unlock()
	return c, &view{o: o, c: c}
}

// drop removes c (committed) from the list.
func (o *overlay) drop(c *changes) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if i := slices.Index(o.batches, c); i >= 0 {
		o.batches = slices.Delete(o.batches, i, i+1)
	}
}

// discard forgets every batch.
func (o *overlay) discard() {
	o.mu.Lock()
	defer o.mu.Unlock()
	clear(o.batches)
	o.batches = o.batches[:0]
}

// oldest reports whether c is the oldest batch not committed.
func (o *overlay) oldest(c *changes) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return len(o.batches) > 0 && o.batches[0] == c
}

// upTo returns the batches a view of c reads, oldest first, under mu.
func (o *overlay) upTo(c *changes) ([]*changes, error) {
	for i := len(o.batches) - 1; i >= 0; i-- {
		if o.batches[i] == c {
			return o.batches[:i+1], nil
		}
	}
	return nil, errGone
}

// empty reports whether c changed nothing.
func (o *overlay) empty(c *changes) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return len(c.tasks) == 0
}

// writes returns task t's changes in c as store writes, in key order.
func (c *changes) writes(t engine.Task) []write {
	// One slice of writes and one buffer for every store key, sized up
	// front: a batch can change 100,000 keys, and an allocation per key
	// showed in profiles.
	n, size := 0, 0
	for ns, keys := range c.tasks[t] {
		n += len(keys)
		for k := range keys {
			size += binary.MaxVarintLen64 + len(ns) + len(k)
		}
	}
	out := make([]write, 0, n)
	buf := make([]byte, 0, size)
	for ns, keys := range c.tasks[t] {
		for k, p := range keys {
			start := len(buf)
			buf = storeKey(buf, ns, []byte(k))
			out = append(out, write{key: buf[start:len(buf):len(buf)], value: p.value, deleted: p.deleted})
		}
	}
	slices.SortFunc(out, func(a, b write) int { return bytes.Compare(a.key, b.key) })
	return out
}

// taskList returns the tasks c changed, in order.
func (c *changes) taskList() []engine.Task {
	out := make([]engine.Task, 0, len(c.tasks))
	for t := range c.tasks {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// view is a batch's View.
type view struct {
	o    *overlay
	c    *changes
	kbuf []byte
	vbuf []byte
}

func (v *view) Get(task engine.Task, ns string, key []byte) ([]byte, bool, error) {
	if err := checkArgs(ns, key); err != nil {
		return nil, false, err
	}
	v.o.mu.RLock()
	bs, err := v.o.upTo(v.c)
	if err != nil {
		v.o.mu.RUnlock()
		return nil, false, err
	}
	for i := len(bs) - 1; i >= 0; i-- {
		if p, ok := bs[i].tasks[task][ns][string(key)]; ok {
			v.o.mu.RUnlock()
			if p.deleted {
				return nil, false, nil
			}
			return p.value, true, nil
		}
	}
	v.o.mu.RUnlock()
	v.kbuf = storeKey(v.kbuf[:0], ns, key)
	val, ok, err := v.o.base.get(task, v.kbuf, v.vbuf[:0])
	if err != nil || !ok {
		return nil, false, err
	}
	v.vbuf = val
	return val, true, nil
}

func (v *view) Put(task engine.Task, ns string, key, value []byte) error {
	if len(value) > MaxValueBytes {
		return fmt.Errorf("state: a value of %d bytes is over the limit of %d; keep less per key", len(value), MaxValueBytes)
	}
	return v.set(task, ns, key, pending{value: bytes.Clone(value)})
}

func (v *view) Delete(task engine.Task, ns string, key []byte) error {
	return v.set(task, ns, key, pending{deleted: true})
}

func (v *view) set(task engine.Task, ns string, key []byte, p pending) error {
	if err := checkArgs(ns, key); err != nil {
		return err
	}
	if !p.deleted && p.value == nil {
		p.value = []byte{} // a value, even if empty, is not a deletion
	}
	v.o.mu.Lock()
	defer v.o.mu.Unlock()
	if _, err := v.o.upTo(v.c); err != nil {
		return err
	}
	byNS := v.c.tasks[task]
	if byNS == nil {
		byNS = map[string]map[string]pending{}
		v.c.tasks[task] = byNS
	}
	keys := byNS[ns]
	if keys == nil {
		keys = map[string]pending{}
		byNS[ns] = keys
	}
	keys[string(key)] = p
	return nil
}

// Scan merges the pending changes in [from, to) with the base's keys.
func (v *view) Scan(task engine.Task, ns string, from, to []byte, fn func(key, value []byte) bool) error {
	if err := checkArgs(ns, from); err != nil {
		return err
	}
	inRange := func(k []byte) bool {
		return bytes.Compare(k, from) >= 0 && (to == nil || bytes.Compare(k, to) < 0)
	}
	// The pending changes in range, newest winning, in key order.
	v.o.mu.RLock()
	bs, err := v.o.upTo(v.c)
	if err != nil {
		v.o.mu.RUnlock()
		return err
	}
	merged := map[string]pending{}
	for _, b := range bs {
		for k, p := range b.tasks[task][ns] {
			if inRange([]byte(k)) {
				merged[k] = p
			}
		}
	}
	v.o.mu.RUnlock()
	over := make([]string, 0, len(merged))
	for k := range merged {
		over = append(over, k)
	}
	slices.Sort(over)

	prefix := nsPrefix(ns)
	lo := storeKey(nil, ns, from)
	var hi []byte
	if to != nil {
		hi = storeKey(nil, ns, to)
	} else {
		hi = prefixEnd(prefix)
	}
	i, stopped := 0, false
	// emit sends pending change k unless it is a deletion.
	emit := func(k string) bool {
		p := merged[k]
		return p.deleted || fn([]byte(k), p.value)
	}
	err = v.o.base.scan(task, lo, hi, func(sk, val []byte) bool {
		k := sk[len(prefix):]
		for i < len(over) && over[i] < string(k) {
			if !emit(over[i]) {
				stopped = true
				return false
			}
			i++
		}
		if i < len(over) && over[i] == string(k) {
			i++
			if !emit(string(k)) {
				stopped = true
				return false
			}
			return true
		}
		if !fn(k, val) {
			stopped = true
			return false
		}
		return true
	})
	if err != nil || stopped {
		return err
	}
	for ; i < len(over); i++ {
		if !emit(over[i]) {
			return nil
		}
	}
	return nil
}

// prefixEnd returns the first key after every key with prefix p (nil: none).
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
