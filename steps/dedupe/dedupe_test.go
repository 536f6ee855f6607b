package dedupe

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/state"
)

var t0 = time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)

// harness runs a step as the engine does with a state.Memory backend:
// batches run ahead, output kept only once its batch commits, and a
// failure dropping what did not.
type harness struct {
	t       *testing.T
	m       *state.Memory
	step    engine.Transform
	epoch   uint64
	pending []pendingBatch
	out     []engine.Record
	rej     []engine.Rejected
}

type pendingBatch struct {
	b   engine.StateBatch
	out []engine.Record
	rej []engine.Rejected
}

func (h *harness) run(in []engine.Record) ([]engine.Record, []engine.Rejected) {
	h.t.Helper()
	ctx, b := h.m.Begin(context.Background())
	out, rej, err := h.step.Process(ctx, in)
	if err != nil {
		h.t.Fatalf("Process: %v", err)
	}
	h.pending = append(h.pending, pendingBatch{b, out, rej})
	return out, rej
}

func (h *harness) commit() {
	h.t.Helper()
	for _, p := range h.pending {
		h.epoch++
		e := h.epoch
		if err := p.b.Prepare(context.Background(), func(engine.Task) uint64 { return e }); err != nil {
			h.t.Fatal(err)
		}
		p.b.Committed()
		h.out = append(h.out, p.out...)
		h.rej = append(h.rej, p.rej...)
	}
	h.pending = nil
}

// restart drops every batch not committed and restores the committed
// state, as a pipeline does after a failure or a restart; with a new step
// instance, nothing the old one held in memory survives.
func (h *harness) restart(step engine.Transform) {
	h.t.Helper()
	h.m.Discard()
	h.pending = nil
	e := h.epoch
	if err := h.m.Restore(context.Background(), nil, func(engine.Task) uint64 { return e }); err != nil {
		h.t.Fatal(err)
	}
	h.step = step
}

func newDedupe(t *testing.T, c Config) *Dedupe {
	t.Helper()
	if c.Key == "" {
		c.Key = "id"
	}
	if c.Time == "" {
		c.Time = "event"
	}
	d, err := New(c, Options{Name: "dedupe@transforms[0]"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// rec is a record of task with JSON {"id": id, "n": n} at t0+at.
func rec(task int32, id string, at time.Duration, n int) engine.Record {
	v, _ := json.Marshal(map[string]any{"id": id, "n": n, "ts": t0.Add(at).Format(time.RFC3339Nano)})
	return engine.Record{Topic: "in", Partition: task, Value: v, Time: t0.Add(at)}
}

func ns(recs []engine.Record) []int {
	var out []int
	for _, r := range recs {
		var v struct{ N int }
		json.Unmarshal(r.Value, &v)
		out = append(out, v.N)
	}
	return out
}

// TestDedupeAcrossRestart: keys kept in committed batches are remembered
// by a new instance of the step after a restart (state restored from the
// backend, not the old instance's memory); keys of batches that never
// committed are not, so their records pass when processed again.
func TestDedupeAcrossRestart(t *testing.T) {
	c := Config{Within: pipelines.Duration(10 * time.Minute)}
	h := &harness{t: t, m: state.NewMemory(), step: newDedupe(t, c)}
	out, _ := h.run([]engine.Record{rec(0, "a", 0, 1), rec(0, "b", time.Second, 2), rec(0, "a", 2*time.Second, 3)})
	if got := fmt.Sprint(ns(out)); got != "[1 2]" {
		t.Fatalf("first batch kept %s, want [1 2]: the second a is a duplicate", got)
	}
	h.commit()
	h.run([]engine.Record{rec(0, "c", 3*time.Second, 4)}) // never commits
	h.restart(newDedupe(t, c))
	out, _ = h.run([]engine.Record{rec(0, "c", 3*time.Second, 4), rec(0, "a", 5*time.Minute, 5), rec(1, "a", 5*time.Minute, 6), rec(0, "b", 11*time.Minute, 7)})
	h.commit()
	// c: its first sighting was discarded, so it passes; a on task 0: a
	// duplicate; a on task 1: another task's state; b: 10m after 1s.
	if got := fmt.Sprint(ns(out)); got != "[4 6 7]" {
		t.Fatalf("after the restart kept %s, want [4 6 7]", got)
	}
}

// TestDedupeAgainstReference: random ids with duplicates over two tasks,
// batches cut at random and failed at random, against a reference that
// keeps a record when no record of its id was kept less than within
// before it.
func TestDedupeAgainstReference(t *testing.T) {
	for _, mode := range []string{"event", "processing"} {
		t.Run(mode, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 16))
			within := 30 * time.Second
			var clock time.Time
			c := Config{Key: "id", Within: pipelines.Duration(within), Time: mode}
			if mode == "event" {
				c.TimeField = "ts"
			}
			mk := func() engine.Transform {
				d, err := New(c, Options{Name: "dedupe@transforms[0]", Now: func() time.Time { return clock }})
				if err != nil {
					t.Fatal(err)
				}
				return d
			}
			h := &harness{t: t, m: state.NewMemory(), step: mk()}
			// Times only move forward within a task (the reference's
			// rule needs no reordering); in processing time every record
			// of a batch has the batch's clock, so the events are cut
			// into batches first and share their batch's time.
			type ev struct {
				task int32
				id   string
				at   time.Duration
				n    int
			}
			var batches [][]ev
			at := time.Duration(0)
			n := 0
			for range 150 {
				var b []ev
				at += time.Duration(rng.IntN(4000)) * time.Millisecond
				for range 1 + rng.IntN(30) {
					if mode == "event" {
						at += time.Duration(rng.IntN(300)) * time.Millisecond
					}
					n++
					b = append(b, ev{int32(rng.IntN(2)), fmt.Sprintf("id%d", rng.IntN(40)), at, n})
				}
				batches = append(batches, b)
			}
			// The reference.
			kept := map[string]time.Duration{}
			var want []int
			for _, b := range batches {
				for _, e := range b {
					id := fmt.Sprint(e.task, e.id)
					if last, ok := kept[id]; ok && e.at-last < within {
						continue
					}
					kept[id] = e.at
					want = append(want, e.n)
				}
			}
			for i := 0; i < len(batches); {
				recs := make([]engine.Record, len(batches[i]))
				for j, e := range batches[i] {
					recs[j] = rec(e.task, e.id, e.at, e.n)
				}
				clock = t0.Add(batches[i][0].at)
				h.run(recs)
				if rng.IntN(8) == 0 {
					h.restart(mk())
					continue
				}
				h.commit()
				i++
			}
			if got := fmt.Sprint(ns(h.out)); got != fmt.Sprint(want) {
				t.Fatalf("kept %s\nwant %s", got, fmt.Sprint(want))
			}
			if len(h.rej) > 0 {
				t.Fatalf("rejected %q", h.rej[0].Reason)
			}
			// Bounded: only ids kept in the last 2*within remain.
			for task := range engine.Task(2) {
				for _, kv := range h.m.Snapshot(task) {
					if n := len(kv); n > 2*40+1 {
						t.Errorf("task %d holds %d entries, more than 2 per id seen recently", task, n)
					}
				}
			}
		})
	}
}

// TestDedupeForgets: keys are dropped from state once no record that can
// still come is within the window of them, so state stays bounded by the
// window, not by how many keys were ever seen.
func TestDedupeForgets(t *testing.T) {
	h := &harness{t: t, m: state.NewMemory(), step: newDedupe(t, Config{Within: pipelines.Duration(time.Minute)})}
	for i := range 100 {
		var b []engine.Record
		for j := range 50 {
			b = append(b, rec(0, fmt.Sprintf("u%d-%d", i, j), time.Duration(i)*10*time.Second, j))
		}
		h.run(b)
		h.commit()
	}
	// Event time reached 990s, so records from 930s on can still come,
	// and keys kept at 870s or before are within a minute of none of
	// them: the keys of the last 12 batches (880s..990s) remain.
	entries := len(h.m.Snapshot(0)["dedupe@transforms[0]"])
	if want := 12*50*2 + 1; entries != want {
		t.Fatalf("%d state entries, want %d (12 batches of 50 keys, entry and index each, and the newest time)", entries, want)
	}
}

// TestDedupeTooOld: in event time, a record more than within behind the
// newest time seen is rejected, since its duplicates may be forgotten.
func TestDedupeTooOld(t *testing.T) {
	h := &harness{t: t, m: state.NewMemory(), step: newDedupe(t, Config{Within: pipelines.Duration(time.Minute)})}
	h.run([]engine.Record{rec(0, "a", 5*time.Minute, 1)})
	out, rej := h.run([]engine.Record{rec(0, "b", 4*time.Minute+time.Second, 2), rec(0, "c", 3*time.Minute+59*time.Second, 3)})
	if fmt.Sprint(ns(out)) != "[2]" || len(rej) != 1 || !strings.HasPrefix(rej[0].Reason, "too old to deduplicate: event time 2026-12-02T06:03:59Z is 1m0s or more behind the newest seen (2026-12-02T06:05:00Z)") {
		t.Fatalf("kept %v, rejected %v", ns(out), rej)
	}
}
