package aggregate

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
)

// event is one generated input record.
type event struct {
	task   engine.Task
	key    string
	at     time.Time
	amount int
	user   string
}

const flushKey = "~flush"

// genEvents makes n events per task whose event times run forward with
// jitter up to disorder behind, so they arrive out of order but never
// later than the disorder, and a last event per task far ahead that
// closes every window before it.
func genEvents(rng *rand.Rand, tasks, n int, disorder time.Duration) [][]event {
	t0 := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	out := make([][]event, tasks)
	for task := range tasks {
		clock := t0
		for range n {
			clock = clock.Add(time.Duration(rng.IntN(6000)) * time.Millisecond)
			at := clock.Add(-time.Duration(rng.Int64N(int64(disorder))))
			at = at.Truncate(time.Millisecond) // epoch millis in the JSON
			out[task] = append(out[task], event{
				task: engine.Task(task), key: fmt.Sprintf("k%d", rng.IntN(8)), at: at,
				amount: rng.IntN(150) - 50, user: fmt.Sprintf("u%d", rng.IntN(6)),
			})
		}
		out[task] = append(out[task], event{task: engine.Task(task), key: flushKey, at: clock.Add(24 * time.Hour), user: "u0"})
	}
	return out
}

// interleave merges the tasks' events in a random order that keeps each
// task's own order (its arrival order), as a source reading several
// partitions would.
func interleave(rng *rand.Rand, per [][]event) []event {
	idx := make([]int, len(per))
	var out []event
	for {
		var live []int
		for t := range per {
			if idx[t] < len(per[t]) {
				live = append(live, t)
			}
		}
		if len(live) == 0 {
			return out
		}
		t := live[rng.IntN(len(live))]
		out = append(out, per[t][idx[t]])
		idx[t]++
	}
}

// record encodes an event: its time as epoch millis or RFC 3339 text
// (alternately) in ts, and as the record timestamp.
func (e event) record(i int) engine.Record {
	var ts any = e.at.UnixMilli()
	if i%2 == 1 {
		ts = e.at.Format(time.RFC3339Nano)
	}
	v, _ := json.Marshal(map[string]any{"user": e.user, "amount": e.amount, "ts": ts, "k": e.key})
	return engine.Record{Topic: "in", Partition: int32(e.task), Offset: int64(i), Key: []byte(e.key), Value: v, Time: e.at}
}

// refWindow is the reference's aggregate of one window.
type refWindow struct {
	count, sum, min, max int
	users                map[string]bool
}

func (r *refWindow) add(e event) {
	if r.count == 0 || e.amount < r.min {
		r.min = e.amount
	}
	if r.count == 0 || e.amount > r.max {
		r.max = e.amount
	}
	r.count++
	r.sum += e.amount
	r.users[e.user] = true
}

func windowID(task engine.Task, key string, start, end time.Time) string {
	return fmt.Sprintf("%d|%s|%s|%s", task, key, start.UTC().Format(time.RFC3339Nano), end.UTC().Format(time.RFC3339Nano))
}

// reference computes every window of every task and key straight from
// the events: no state, no batches, no watermark (no event is late).
func reference(per [][]event, w *Window) map[string]*refWindow {
	ref := map[string]*refWindow{}
	add := func(e event, s, end time.Time) {
		id := windowID(e.task, e.key, s, end)
		if ref[id] == nil {
			ref[id] = &refWindow{users: map[string]bool{}}
		}
		ref[id].add(e)
	}
	for _, evs := range per {
		byKey := map[string][]event{}
		for _, e := range evs {
			if e.key != flushKey {
				byKey[e.key] = append(byKey[e.key], e)
			}
		}
		for _, evs := range byKey {
			switch {
			case w.Tumbling != 0:
				for _, e := range evs {
					s := e.at.Truncate(w.Tumbling.D())
					add(e, s, s.Add(w.Tumbling.D()))
				}
			case w.Sliding != nil:
				for _, e := range evs {
					for s := e.at.Truncate(w.Sliding.Every.D()); s.Add(w.Sliding.Size.D()).After(e.at); s = s.Add(-w.Sliding.Every.D()) {
						add(e, s, s.Add(w.Sliding.Size.D()))
					}
				}
			case w.Session != nil:
				// Sessions are the connected parts of the union of
				// [t, t+gap] over the key's events.
				sorted := slices.Clone(evs)
				slices.SortFunc(sorted, func(a, b event) int { return a.at.Compare(b.at) })
				gap := w.Session.Gap.D()
				for i := 0; i < len(sorted); {
					start, end := sorted[i].at, sorted[i].at.Add(gap)
					j := i + 1
					for j < len(sorted) && !sorted[j].at.After(end) {
						if e := sorted[j].at.Add(gap); e.After(end) {
							end = e
						}
						j++
					}
					for _, e := range sorted[i:j] {
						add(e, start, end)
					}
					i = j
				}
			}
		}
	}
	return ref
}

// TestWindowsAgainstReference feeds out-of-order events of three tasks
// through tumbling, sliding and session windows in batches cut at random,
// with failures (batches run ahead, then discarded and processed again)
// in the middle, and compares the windows emitted on close with a
// reference computed from the events directly: each window exactly once,
// with exact values, so a replay never counts twice.
func TestWindowsAgainstReference(t *testing.T) {
	cases := []struct {
		name      string
		window    Window
		timeField string
	}{
		{"tumbling", Window{Tumbling: pipelines.Duration(time.Minute)}, "ts"},
		{"sliding", Window{Sliding: &Sliding{Size: pipelines.Duration(3 * time.Minute), Every: pipelines.Duration(time.Minute)}}, ""},
		{"session", Window{Session: &Session{Gap: pipelines.Duration(15 * time.Second)}}, "ts"},
	}
	for _, tc := range cases {
		for seed := range uint64(3) {
			t.Run(fmt.Sprintf("%s/seed%d", tc.name, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 16))
				const disorder = 20 * time.Second
				per := genEvents(rng, 3, 400, disorder)
				w := tc.window
				a, err := New(Config{
					Key: "k", Window: &w, Time: "event", TimeField: tc.timeField,
					AllowedLateness: pipelines.Duration(disorder + time.Second),
					Functions: map[string]string{"count": "count", "total": "sum(amount)", "low": "min(amount)",
						"high": "max(amount)", "mean": "avg(amount)", "users": "count-distinct(user)"},
				}, Options{Name: "aggregate@transforms[0]"})
				if err != nil {
					t.Fatal(err)
				}
				h := newHarness(t, a.Transform())
				feed(t, rng, h, interleave(rng, per))
				if len(h.rej) > 0 {
					t.Fatalf("%d records rejected, none is late: first %q", len(h.rej), h.rej[0].Reason)
				}
				compare(t, h.out, reference(per, &w))
				assertStateEmpty(t, h, 3)
			})
		}
	}
}

// feed cuts evs into batches of random sizes and runs them through h:
// usually committed one or two at a time, sometimes run ahead and failed,
// then run again from the last commit.
func feed(t *testing.T, rng *rand.Rand, h *harness, evs []event) {
	recs := make([]engine.Record, len(evs))
	for i, e := range evs {
		recs[i] = e.record(i)
	}
	var cuts []int
	for at := 0; at < len(recs); {
		cuts = append(cuts, at)
		at += 1 + rng.IntN(120)
	}
	cuts = append(cuts, len(recs))
	failures := 0
	for i := 0; i+1 < len(cuts); {
		h.run(recs[cuts[i]:cuts[i+1]])
		switch r := rng.IntN(10); {
		case r == 0 && i+2 < len(cuts):
			// Run the next batch ahead too, then fail: both are
			// processed again.
			h.run(recs[cuts[i+1]:cuts[i+2]])
			h.fail()
			failures++
			continue
		case r == 1:
			h.fail()
			failures++
			continue
		case r < 4 && i+2 < len(cuts):
			h.run(recs[cuts[i+1]:cuts[i+2]])
			i++
		}
		h.commit()
		i++
	}
	if failures == 0 {
		t.Fatal("the run had no failure; pick another seed")
	}
}

// compare checks the emitted windows against the reference.
func compare(t *testing.T, out []engine.Record, ref map[string]*refWindow) {
	t.Helper()
	got := map[string]result{}
	for _, r := range out {
		res := decode(t, r)
		if res.Key == flushKey {
			continue
		}
		start, err1 := time.Parse(time.RFC3339Nano, res.WindowStart)
		end, err2 := time.Parse(time.RFC3339Nano, res.WindowEnd)
		if err1 != nil || err2 != nil {
			t.Fatalf("output %s: window times are not RFC 3339", r.Value)
		}
		if !r.Time.Equal(end) {
			t.Errorf("output %s has timestamp %s, not its window's end", r.Value, r.Time)
		}
		id := windowID(engine.Task(r.Partition), res.Key, start, end)
		if _, dup := got[id]; dup {
			t.Fatalf("window %s emitted twice", id)
		}
		got[id] = res
	}
	for id, want := range ref {
		g, ok := got[id]
		if !ok {
			t.Errorf("window %s (count %d) never emitted", id, want.count)
			continue
		}
		delete(got, id)
		check := func(name string, v *float64, w float64) {
			if v == nil || math.Abs(*v-w) > 1e-9 {
				t.Errorf("window %s: %s = %v, want %v", id, name, deref(v), w)
			}
		}
		check("count", g.Count, float64(want.count))
		check("total", g.Total, float64(want.sum))
		check("low", g.Low, float64(want.min))
		check("high", g.High, float64(want.max))
		check("mean", g.Mean, float64(want.sum)/float64(want.count))
		check("users", g.Users, float64(len(want.users)))
	}
	for id := range got {
		t.Errorf("window %s emitted, not in the reference", id)
	}
	if t.Failed() {
		return
	}
	if len(ref) < 50 {
		t.Fatalf("only %d windows: the test proves little", len(ref))
	}
}

func deref(v *float64) any {
	if v == nil {
		return "absent"
	}
	return *v
}

// assertStateEmpty checks that closing every window left no state behind
// but the watermark (and the flush key's open window).
func assertStateEmpty(t *testing.T, h *harness, tasks int) {
	t.Helper()
	for task := range tasks {
		for ns, kv := range h.m.Snapshot(engine.Task(task)) {
			for k := range kv {
				if k == string(metaKey) || strings.Contains(k, flushKey) {
					continue
				}
				t.Errorf("task %d: state %s holds %q after every window closed", task, ns, k)
			}
		}
	}
}

// TestLatenessDoesNotDependOnBatches: with disorder beyond the allowed
// lateness, some records are late; which ones, and every window's final
// values, are the same whether the input comes as one batch or cut at
// random with failures and replays, since the watermark advances record
// by record.
func TestLatenessDoesNotDependOnBatches(t *testing.T) {
	for _, tc := range []struct {
		name     string
		w        Window
		disorder time.Duration // past the lateness: a sliding record is late only once all its windows closed
	}{
		{"tumbling", Window{Tumbling: pipelines.Duration(time.Minute)}, 40 * time.Second},
		{"sliding", Window{Sliding: &Sliding{Size: pipelines.Duration(2 * time.Minute), Every: pipelines.Duration(30 * time.Second)}}, 3 * time.Minute},
		{"session", Window{Session: &Session{Gap: pipelines.Duration(15 * time.Second)}}, 40 * time.Second},
	} {
		w := tc.w
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 5))
			per := genEvents(rng, 2, 400, tc.disorder)
			evs := interleave(rng, per)
			mk := func() *harness {
				a, err := New(Config{Key: "k", Window: &w, Time: "event", TimeField: "ts", AllowedLateness: pipelines.Duration(10 * time.Second),
					Functions: map[string]string{"count": "count", "users": "count-distinct(user)"}}, Options{Name: "agg"})
				if err != nil {
					t.Fatal(err)
				}
				return newHarness(t, a.Transform())
			}
			whole := mk()
			recs := make([]engine.Record, len(evs))
			for i, e := range evs {
				recs[i] = e.record(i)
			}
			whole.run(recs)
			whole.commit()
			cut := mk()
			feed(t, rng, cut, evs)
			if len(whole.rej) == 0 {
				t.Fatal("no record was late: the test proves little")
			}
			summary := func(h *harness) (out, rej []string) {
				for _, r := range h.out {
					out = append(out, fmt.Sprintf("%d %s", r.Partition, r.Value))
				}
				for _, r := range h.rej {
					rej = append(rej, fmt.Sprint(r.Record.Offset))
				}
				slices.Sort(out)
				slices.Sort(rej)
				return out, rej
			}
			wo, wr := summary(whole)
			co, cr := summary(cut)
			if !slices.Equal(wr, cr) {
				t.Fatalf("late records differ: %d in one batch, %d cut", len(wr), len(cr))
			}
			if !slices.Equal(wo, co) {
				t.Fatalf("windows differ: %d in one batch, %d cut", len(wo), len(co))
			}
			t.Logf("%d late of %d, %d windows", len(wr), len(recs), len(wo))
		})
	}
}
