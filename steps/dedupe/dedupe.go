// Package dedupe is the built-in dedupe step: it drops a record whose key
// was seen within a window of time, exactly once across restarts, since
// the keys it remembers live in the pipeline's state backend (state.View,
// one namespace per step and task) and commit with the sink's epochs.
//
// State stays bounded by the window: each key is remembered with the time
// it was last kept, in a time-ordered index that is scanned and trimmed as
// the clock (processing time) or the newest event time (event time)
// advances.
package dedupe

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/steps/field"
)

// Step is a dedupe item of a pipeline file's transforms: `- dedupe: {...}`.
type Step struct {
	Dedupe Config `yaml:"dedupe" required:"true" example:"{key: id, within: 10m}"`
}

// StateKey is what the step keys its state by (pipelines.KeyedConfig):
// lint warns when the input is not partitioned by it.
func (s *Step) StateKey() string { return s.Dedupe.Key }

// Config is the dedupe block.
type Config struct {
	Key       string             `yaml:"key" required:"true" example:"id" doc:"key: the record key; value: the whole value; else a dot-separated path into the JSON value"`
	Within    pipelines.Duration `yaml:"within" required:"true" example:"10m" max:"8784h" doc:"a record whose key was kept less than this long before (or after, in event time) is dropped"`
	Time      string             `yaml:"time" default:"event" enum:"event|processing" doc:"event: time-field, or the record timestamp"`
	TimeField string             `yaml:"time-field" doc:"event time: a JSON path holding RFC 3339 text or epoch milliseconds; absent: the record timestamp"`
}

// Limits.
const (
	// MinWithin is the shortest window: times are nanoseconds, but a
	// window under a millisecond is almost certainly a unit mistake.
	MinWithin = time.Millisecond
	// MaxWithin (a year) bounds how long a key is remembered: every key
	// seen in that time is a state entry.
	MaxWithin = 366 * 24 * time.Hour
	// MaxKeyBytes bounds a deduplication key: it is stored twice (entry
	// and time index) under state.MaxKeyBytes with some framing.
	MaxKeyBytes = state.MaxKeyBytes - 32
)

// Validate checks what the tags cannot.
func (s *Step) Validate(c *pipelines.Check) {
	if !c.OK("dedupe") {
		return
	}
	d := &s.Dedupe
	if c.OK("dedupe.key") && d.Key != "" {
		if _, err := field.ParseKey(d.Key); err != nil {
			c.Errorf("dedupe.key", "%s %v", c.Path("dedupe.key"), err)
		}
	}
	if c.OK("dedupe.within") && (d.Within.D() < MinWithin || d.Within.D() > MaxWithin) {
		c.Errorf("dedupe.within", "%s is %s; write a duration between %s and %s, such as within: 10m", c.Path("dedupe.within"), d.Within, MinWithin, pipelines.Duration(MaxWithin))
	}
	if d.TimeField != "" && c.OK("dedupe.time-field") {
		if _, err := field.ParsePath(d.TimeField); err != nil {
			c.Errorf("dedupe.time-field", "%s %v", c.Path("dedupe.time-field"), err)
		} else if d.Time == "processing" {
			c.KeyErrorf("dedupe.time-field", "%s reads event time, and time is processing; remove time-field, or write time: event", c.Path("dedupe.time-field"))
		}
	}
}

// State layout, per task, in the step's namespace:
//
//	'k' key       → time kept: the keys remembered
//	'x' time key  → 0: the same, ordered by time, scanned to forget
//	'm'           → newest event time seen
//
// Times are Unix nanoseconds, big-endian with the sign bit flipped so
// byte order is time order.
const (
	tagKey   = 'k'
	tagIndex = 'x'
)

var (
	metaKey = []byte{'m'}
	present = []byte{0}
)

var errCorrupt = errors.New("dedupe: a state entry is not in this sluice's format; the state was written by another step or version")

func appendTime(b []byte, t int64) []byte { return binary.BigEndian.AppendUint64(b, uint64(t)^(1<<63)) }
func readTime(b []byte) int64             { return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)) }

func entryKey(k []byte) []byte { return append([]byte{tagKey}, k...) }
func indexKey(t int64, k []byte) []byte {
	return append(appendTime([]byte{tagIndex}, t), k...)
}

// Options are what the step needs besides its block.
type Options struct {
	// Name is the step's state namespace and the Plugin of the records it
	// rejects: stable across restarts ("dedupe@transforms[1]").
	Name string
	// Now is the clock of processing time; nil = time.Now.
	Now func() time.Time
}

// Dedupe is the step. It keeps nothing between batches: what it
// remembers is in the batch's state.View.
type Dedupe struct {
	name   string
	key    field.Key
	time   field.Time
	within int64
	now    func() time.Time
}

// New builds the step from a validated block.
func New(c Config, o Options) (*Dedupe, error) {
	key, err := field.ParseKey(c.Key)
	if err != nil {
		return nil, fmt.Errorf("dedupe: key %v", err)
	}
	tm, err := field.ParseTime(c.Time, c.TimeField)
	if err != nil {
		return nil, fmt.Errorf("dedupe: time-field %v", err)
	}
	if c.Within.D() < MinWithin {
		return nil, fmt.Errorf("dedupe: within is %s; write %s or more", c.Within, MinWithin)
	}
	d := &Dedupe{name: o.Name, key: key, time: tm, within: int64(c.Within), now: o.Now}
	if d.now == nil {
		d.now = time.Now
	}
	return d, nil
}

func (d *Dedupe) Close() error { return nil }

// taskState is one task's newest event time within a batch.
type taskState struct {
	newest int64 // math.MinInt64: none yet
	dirty  bool
}

// Process passes on the records whose key was not kept within the window.
func (d *Dedupe) Process(ctx context.Context, in []engine.Record) ([]engine.Record, []engine.Rejected, error) {
	v := state.ViewFrom(ctx)
	if v == nil {
		return nil, nil, errors.New("dedupe: the pipeline has no state backend; the step needs one (components.Build gives it one for a stateful step)")
	}
	now := d.now().UnixNano()
	tasks := map[engine.Task]*taskState{}
	var out []engine.Record
	var rej []engine.Rejected
	for i := range in {
		r := &in[i]
		task := engine.Task(r.Partition)
		ts := tasks[task]
		if ts == nil {
			var err error
			if ts, err = d.load(v, task); err != nil {
				return nil, nil, err
			}
			tasks[task] = ts
		}
		keep, reason, err := d.record(v, task, ts, r, now)
		switch {
		case err != nil:
			return nil, nil, err
		case reason != "":
			rej = append(rej, engine.Rejected{Record: *r, Reason: reason, Plugin: d.name})
		case keep:
			out = append(out, *r)
		}
	}
	for task, ts := range tasks {
		if ts.dirty {
			if err := v.Put(task, d.name, metaKey, appendTime(nil, ts.newest)); err != nil {
				return nil, nil, fmt.Errorf("dedupe: write task %d: %w", task, err)
			}
		}
		if err := d.forget(v, task, d.horizon(ts, now)); err != nil {
			return nil, nil, err
		}
	}
	return out, rej, nil
}

// load reads task's newest event time.
func (d *Dedupe) load(v state.View, task engine.Task) (*taskState, error) {
	ts := &taskState{newest: math.MinInt64}
	if d.time.Processing {
		return ts, nil
	}
	val, ok, err := v.Get(task, d.name, metaKey)
	if err != nil {
		return nil, fmt.Errorf("dedupe: read task %d: %w", task, err)
	}
	if ok {
		if len(val) != 8 {
			return nil, errCorrupt
		}
		ts.newest = readTime(val)
	}
	return ts, nil
}

// horizon is the earliest time a record can still have and be checked:
// now in processing time; in event time, just past the newest time seen
// minus within (older records are rejected: their duplicates may have
// been forgotten).
func (d *Dedupe) horizon(ts *taskState, now int64) int64 {
	if d.time.Processing {
		return now
	}
	if ts.newest == math.MinInt64 {
		return math.MinInt64
	}
	return ts.newest - d.within + 1
}

// record decides r: kept (and remembered), dropped as a duplicate, or
// rejected with a reason.
func (d *Dedupe) record(v state.View, task engine.Task, ts *taskState, r *engine.Record, now int64) (bool, string, error) {
	doc := field.NewDoc(r.Value)
	k, err := d.key.Of(r, doc)
	if err != nil {
		return false, err.Error(), nil
	}
	if len(k) > MaxKeyBytes {
		return false, fmt.Sprintf("the key is %d bytes, over the limit of %d (MaxKeyBytes); deduplicate by a shorter field", len(k), MaxKeyBytes), nil
	}
	t, err := d.time.Of(r, doc, time.Unix(0, now))
	if err != nil {
		return false, err.Error(), nil
	}
	if h := d.horizon(ts, now); t < h {
		return false, fmt.Sprintf("too old to deduplicate: event time %s is %s or more behind the newest seen (%s), and keys are remembered for within (%s); raise within to check such records",
			rfc3339(t), time.Duration(d.within), rfc3339(ts.newest), time.Duration(d.within)), nil
	}
	if !d.time.Processing && t > ts.newest {
		ts.newest, ts.dirty = t, true
	}
	ek := entryKey(k)
	val, ok, err := v.Get(task, d.name, ek)
	if err != nil {
		return false, "", fmt.Errorf("dedupe: read task %d: %w", task, err)
	}
	var seen int64
	if ok {
		if len(val) != 8 {
			return false, "", errCorrupt
		}
		seen = readTime(val)
		if t-seen < d.within && seen-t < d.within {
			return false, "", nil // a duplicate
		}
		if err := v.Delete(task, d.name, indexKey(seen, k)); err != nil {
			return false, "", fmt.Errorf("dedupe: write task %d: %w", task, err)
		}
	}
	// A record kept after an earlier one is at least within later (an
	// older one is too old, or a duplicate), so t is the newest kept.
	if err := v.Put(task, d.name, ek, appendTime(nil, t)); err != nil {
		return false, "", fmt.Errorf("dedupe: write task %d: %w", task, err)
	}
	if err := v.Put(task, d.name, indexKey(t, k), present); err != nil {
		return false, "", fmt.Errorf("dedupe: write task %d: %w", task, err)
	}
	return true, "", nil
}

// forget drops the keys kept at or before horizon - within: no record
// that can still come is within the window of them.
func (d *Dedupe) forget(v state.View, task engine.Task, horizon int64) error {
	if horizon == math.MinInt64 || horizon-d.within < math.MinInt64+1 {
		return nil
	}
	var old [][]byte
	err := v.Scan(task, d.name, []byte{tagIndex}, appendTime([]byte{tagIndex}, horizon-d.within+1), func(key, _ []byte) bool {
		old = append(old, bytes.Clone(key))
		return true
	})
	if err != nil {
		return fmt.Errorf("dedupe: read task %d: %w", task, err)
	}
	for _, ik := range old {
		if len(ik) < 9 {
			return errCorrupt
		}
		if err := v.Delete(task, d.name, ik); err != nil {
			return fmt.Errorf("dedupe: write task %d: %w", task, err)
		}
		if err := v.Delete(task, d.name, entryKey(ik[9:])); err != nil {
			return fmt.Errorf("dedupe: write task %d: %w", task, err)
		}
	}
	return nil
}

func rfc3339(t int64) string { return time.Unix(0, t).UTC().Format(time.RFC3339Nano) }
