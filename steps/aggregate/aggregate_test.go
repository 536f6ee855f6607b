package aggregate

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/state"
)

var t0 = time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)

// rec is a record of task 0 with key k, event time t0+at in ts and a
// JSON value holding amount and user.
func rec(k string, at time.Duration, amount int, user string) engine.Record {
	v, _ := json.Marshal(map[string]any{"ts": t0.Add(at).UnixMilli(), "amount": amount, "user": user})
	return engine.Record{Topic: "in", Key: []byte(k), Value: v, Time: t0.Add(at)}
}

func newStep(t *testing.T, c Config) *Aggregate {
	t.Helper()
	if c.Key == "" {
		c.Key = "key"
	}
	if c.Time == "" {
		c.Time = "event"
	}
	if c.Functions == nil {
		c.Functions = map[string]string{"count": "count", "total": "sum(amount)"}
	}
	a, err := New(c, Options{Name: "aggregate@transforms[0]"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func tumbling(d time.Duration) *Window { return &Window{Tumbling: pipelines.Duration(d)} }

func values(t *testing.T, out []engine.Record) []string {
	t.Helper()
	var s []string
	for _, r := range out {
		s = append(s, string(r.Value))
	}
	return s
}

// TestLateRecordsAreRejected: once the watermark (newest event time -
// allowed-lateness) passes a window's end, the window is emitted and a
// record of it goes to the dead letters with a reason that says why and
// what to change; an out-of-order record within the lateness still counts.
func TestLateRecordsAreRejected(t *testing.T) {
	a := newStep(t, Config{Window: tumbling(time.Minute), TimeField: "ts", AllowedLateness: pipelines.Duration(10 * time.Second)})
	h := newHarness(t, a.Transform())
	out, rej := h.run([]engine.Record{rec("a", 30*time.Second, 1, "u"), rec("a", 65*time.Second, 2, "u")})
	if len(out) != 0 || len(rej) != 0 {
		t.Fatalf("watermark 55s closed something: out %v rej %v", values(t, out), rej)
	}
	// 50s is 15s behind the newest time (65s), within... no: the watermark
	// is 55s, and 50s's window [0, 1m) ends after it, so it counts.
	out, rej = h.run([]engine.Record{rec("a", 50*time.Second, 4, "u"), rec("a", 71*time.Second, 8, "u")})
	if len(rej) != 0 {
		t.Fatalf("a record within the lateness was rejected: %v", rej[0].Reason)
	}
	want := `{"key":"a","window_start":"2026-12-02T06:00:00Z","window_end":"2026-12-02T06:01:00Z","count":2,"total":5}`
	if got := values(t, out); len(got) != 1 || got[0] != want {
		t.Fatalf("watermark 61s: got %v, want [%s]", got, want)
	}
	if !out[0].Time.Equal(t0.Add(time.Minute)) || string(out[0].Key) != "a" || out[0].Partition != 0 {
		t.Fatalf("output record %+v: want key a, partition 0, timestamp the window's end", out[0])
	}
	late := rec("a", 59*time.Second, 16, "u")
	out, rej = h.run([]engine.Record{late})
	if len(out) != 0 || len(rej) != 1 {
		t.Fatalf("late record: out %v, %d rejected; want it rejected alone", values(t, out), len(rej))
	}
	if r := rej[0].Reason; !strings.HasPrefix(r, "late: event time 2026-12-02T06:00:59Z is in window [2026-12-02T06:00:00Z, 2026-12-02T06:01:00Z)") ||
		!strings.Contains(r, "raise allowed-lateness") || strings.Contains(r, "\n") {
		t.Fatalf("late reason %q", r)
	}
	if string(rej[0].Record.Value) != string(late.Value) || rej[0].Plugin != "aggregate@transforms[0]" {
		t.Fatalf("rejected %+v: want the record itself, from the step", rej[0])
	}
	h.commit()
	// The closed window's state is gone; the watermark stays.
	for ns, kv := range h.m.Snapshot(0) {
		for k := range kv {
			if k != string(metaKey) && k[0] != tagAcc && k[0] != tagClose {
				t.Errorf("state %s: unexpected key %q", ns, k)
			}
			if strings.Contains(k, "a") && k[0] == tagAcc && readTime([]byte(k[len(k)-8:])) == t0.UnixNano() {
				t.Errorf("the closed window [0, 1m) is still in state")
			}
		}
	}
}

// TestEmitEveryBatchAndOnClose: every-batch emits each changed window once
// per batch with its values so far; on-close emits each window once, when
// it closes.
func TestEmitEveryBatchAndOnClose(t *testing.T) {
	batches := [][]engine.Record{
		{rec("a", 10*time.Second, 1, "u"), rec("a", 20*time.Second, 2, "u"), rec("b", 30*time.Second, 5, "u")},
		{rec("a", 40*time.Second, 3, "u")},
		{rec("b", 70*time.Second, 1, "u")}, // closes [0, 1m)
	}
	for _, tc := range []struct {
		emit string
		want [][]string
	}{
		{"every-batch", [][]string{
			{`{"key":"a","window_start":"2026-12-02T06:00:00Z","window_end":"2026-12-02T06:01:00Z","count":2,"total":3}`,
				`{"key":"b","window_start":"2026-12-02T06:00:00Z","window_end":"2026-12-02T06:01:00Z","count":1,"total":5}`},
			{`{"key":"a","window_start":"2026-12-02T06:00:00Z","window_end":"2026-12-02T06:01:00Z","count":3,"total":6}`},
			{`{"key":"b","window_start":"2026-12-02T06:01:00Z","window_end":"2026-12-02T06:02:00Z","count":1,"total":1}`},
		}},
		{"on-close", [][]string{
			nil,
			nil,
			{`{"key":"a","window_start":"2026-12-02T06:00:00Z","window_end":"2026-12-02T06:01:00Z","count":3,"total":6}`,
				`{"key":"b","window_start":"2026-12-02T06:00:00Z","window_end":"2026-12-02T06:01:00Z","count":1,"total":5}`},
		}},
	} {
		t.Run(tc.emit, func(t *testing.T) {
			h := newHarness(t, newStep(t, Config{Window: tumbling(time.Minute), TimeField: "ts", Emit: tc.emit}).Transform())
			for i, b := range batches {
				out, _ := h.run(b)
				h.commit()
				if got := values(t, out); fmt.Sprint(got) != fmt.Sprint(tc.want[i]) {
					t.Errorf("batch %d: got\n%v\nwant\n%v", i+1, got, tc.want[i])
				}
			}
		})
	}
}

// TestRunningTotalSurvivesFailures: without a window the step keeps a
// running total per key (every-batch by default), and batches that fail
// and are processed again do not count twice.
func TestRunningTotalSurvivesFailures(t *testing.T) {
	a := newStep(t, Config{Functions: map[string]string{"count": "count", "top": "max(amount)"}})
	h := newHarness(t, a.Transform())
	h.run([]engine.Record{rec("w", 0, 3, "u"), rec("w", 0, 9, "u")})
	h.commit()
	h.run([]engine.Record{rec("w", 0, 4, "u")})
	h.run([]engine.Record{rec("w", 0, 100, "u")})
	h.fail()
	out, _ := h.run([]engine.Record{rec("w", 0, 4, "u")})
	h.commit()
	want := `{"key":"w","count":3,"top":9}`
	if got := values(t, out); len(got) != 1 || got[0] != want {
		t.Fatalf("after a failure and a replay: got %v, want [%s]", got, want)
	}
	if !out[0].Time.Equal(t0) {
		t.Fatalf("running total's timestamp %s, want the latest record's %s", out[0].Time, t0)
	}
}

// TestProcessingTimeClosesOnTick: with processing time, a window closes
// when the clock passes its end, on a tick with no input.
func TestProcessingTimeClosesOnTick(t *testing.T) {
	now := t0.Add(5 * time.Second)
	a, err := New(Config{Key: "key", Window: tumbling(time.Minute), Time: "processing", Functions: map[string]string{"n": "count"}},
		Options{Name: "agg", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tr := a.Transform()
	tk, ok := tr.(engine.Ticker)
	if !ok || tk.Tick() != time.Second {
		t.Fatalf("a processing-time window step is %T; want an engine.Ticker of 1s", tr)
	}
	if _, ok := newStep(t, Config{Window: tumbling(time.Minute)}).Transform().(engine.Ticker); ok {
		t.Fatal("an event-time step asks for ticks it does not need")
	}
	h := newHarness(t, tr)
	h.run([]engine.Record{{Partition: 2, Key: []byte("a")}, {Partition: 2, Key: []byte("a")}})
	h.commit()
	now = t0.Add(59 * time.Second)
	if out, _ := h.run(nil); len(out) != 0 {
		t.Fatalf("tick before the window's end emitted %v", values(t, out))
	}
	now = t0.Add(61 * time.Second)
	out, _ := h.run(nil)
	h.commit()
	want := `{"key":"a","window_start":"2026-12-02T06:00:00Z","window_end":"2026-12-02T06:01:00Z","n":2}`
	if got := values(t, out); len(got) != 1 || got[0] != want || out[0].Partition != 2 {
		t.Fatalf("tick after the window's end: got %v, want [%s] on partition 2", got, want)
	}
}

// TestSessionsMerge: a record that touches two sessions joins them, with
// their distinct values moved into the merged one and counted once.
func TestSessionsMerge(t *testing.T) {
	a := newStep(t, Config{Window: &Window{Session: &Session{Gap: pipelines.Duration(10 * time.Second)}}, TimeField: "ts", AllowedLateness: pipelines.Duration(30 * time.Second),
		Functions: map[string]string{"count": "count", "users": "count-distinct(user)"}})
	h := newHarness(t, a.Transform())
	h.run([]engine.Record{rec("k", 0, 1, "x"), rec("k", 15*time.Second, 1, "y"), rec("k", 16*time.Second, 1, "x")})
	h.commit()
	h.run([]engine.Record{rec("k", 8*time.Second, 1, "y")}) // [8s, 18s] touches [0, 10s] and [15s, 26s]
	h.commit()
	out, _ := h.run([]engine.Record{rec("k", 60*time.Second, 1, "z")})
	h.commit()
	want := `{"key":"k","window_start":"2026-12-02T06:00:00Z","window_end":"2026-12-02T06:00:26Z","count":4,"users":2}`
	if got := values(t, out); len(got) != 1 || got[0] != want {
		t.Fatalf("got %v, want [%s]", got, want)
	}
	for ns, kv := range h.m.Snapshot(0) {
		if strings.HasSuffix(ns, "/distinct") && len(kv) != 1 {
			t.Errorf("distinct values left after the merged session closed: %q", kv)
		}
	}
}

// TestDistinctLimit: a count-distinct refuses the value past
// MaxDistinctPerWindow in one window, with a reason naming the limit, and
// keeps counting values it already holds.
func TestDistinctLimit(t *testing.T) {
	a := newStep(t, Config{Window: tumbling(time.Hour), TimeField: "ts", Functions: map[string]string{"users": "count-distinct(user)"}})
	h := newHarness(t, a.Transform())
	batch := make([]engine.Record, 0, 10_000)
	for i := range MaxDistinctPerWindow {
		batch = append(batch, rec("k", 0, 0, fmt.Sprint(i)))
		if len(batch) == cap(batch) {
			if _, rej := h.run(batch); len(rej) > 0 {
				t.Fatalf("rejected under the limit: %s", rej[0].Reason)
			}
			h.commit()
			batch = batch[:0]
		}
	}
	_, rej := h.run([]engine.Record{rec("k", 0, 0, "one more"), rec("k", 0, 0, "7")})
	if len(rej) != 1 || !strings.Contains(rej[0].Reason, "MaxDistinctPerWindow") || !strings.Contains(rej[0].Reason, "100000 distinct values") {
		t.Fatalf("rejected %v; want only the new value, naming the limit", rej)
	}
}

// TestRejectsBadRecords: what a record lacks is its rejection reason.
func TestRejectsBadRecords(t *testing.T) {
	a := newStep(t, Config{Key: "user.id", Window: tumbling(time.Minute), TimeField: "ts"})
	h := newHarness(t, a.Transform())
	for _, tc := range []struct{ value, reason string }{
		{`not json`, "value is not JSON"},
		{`{"ts": 1, "amount": 1}`, "key field user.id is missing"},
		{`{"user": {"id": 1}, "amount": 1}`, "time field ts is missing"},
		{`{"user": {"id": 1}, "ts": "yesterday", "amount": 1}`, `time field ts: "yesterday" is not RFC 3339`},
		{`{"user": {"id": 1}, "ts": 1, "amount": "12"}`, `sum(amount): field amount holds 12, not a number`},
	} {
		_, rej := h.run([]engine.Record{{Value: []byte(tc.value)}})
		if len(rej) != 1 || !strings.Contains(rej[0].Reason, tc.reason) {
			t.Errorf("%s: rejected %v, want reason %q", tc.value, rej, tc.reason)
		}
	}
}

// TestNoStateBackend: the step says what is missing rather than dropping
// its state.
func TestNoStateBackend(t *testing.T) {
	_, _, err := newStep(t, Config{}).Process(t.Context(), []engine.Record{rec("a", 0, 1, "u")})
	if err == nil || !strings.Contains(err.Error(), "no state backend") {
		t.Fatalf("got %v", err)
	}
}

// TestKeyIsTheValue: key: value counts whole values, such as the words the
// split plugin makes, which are not JSON.
func TestKeyIsTheValue(t *testing.T) {
	h := newHarness(t, newStep(t, Config{Key: "value", Functions: map[string]string{"n": "count"}}).Transform())
	var in []engine.Record
	for _, w := range strings.Fields("to be or not to be") {
		// No timestamp: a running total does not need one.
		in = append(in, engine.Record{Value: []byte(w)})
	}
	out, rej := h.run(in)
	if len(rej) > 0 {
		t.Fatalf("rejected %q", rej[0].Reason)
	}
	want := `[{"key":"to","n":2} {"key":"be","n":2} {"key":"or","n":1} {"key":"not","n":1}]`
	if got := fmt.Sprint(values(t, out)); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// refusing is a View that refuses one task, as the durable backend does
// for a task another process runs now.
type refusing struct {
	state.View
	task engine.Task
}

func (r refusing) Scan(t engine.Task, ns string, from, to []byte, fn func(k, v []byte) bool) error {
	if t == r.task {
		return errors.New("state: task is not run by this process")
	}
	return r.View.Scan(t, ns, from, to, fn)
}

// TestTickSkipsTasksThatMoved: a processing-time tick closes the windows
// of the tasks this process saw; one whose state is no longer here (it
// moved to another process) is left to that process instead of failing
// every tick.
func TestTickSkipsTasksThatMoved(t *testing.T) {
	now := t0
	a, err := New(Config{Key: "key", Window: tumbling(time.Minute), Time: "processing", Functions: map[string]string{"n": "count"}},
		Options{Name: "agg", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, a.Transform())
	h.run([]engine.Record{{Partition: 1, Key: []byte("a")}, {Partition: 2, Key: []byte("b")}})
	h.commit()
	now = t0.Add(2 * time.Minute)
	ctx, _ := h.m.Begin(t.Context())
	out, _, err := a.Process(state.WithView(ctx, refusing{state.ViewFrom(ctx), 2}), nil)
	if err != nil {
		t.Fatalf("a tick failed on a task that moved away: %v", err)
	}
	if got := values(t, out); len(got) != 1 || out[0].Partition != 1 {
		t.Fatalf("tick emitted %v, want task 1's window alone", got)
	}
	if _, ok := a.tasks[2]; ok {
		t.Fatal("the task that moved is still ticked")
	}
}

// TestOpenSessionsLimit: a key may hold MaxOpenWindowsPerKey open
// sessions; a record that would open one more is rejected, naming the
// limit, and one that joins an open session still counts.
func TestOpenSessionsLimit(t *testing.T) {
	a := newStep(t, Config{Window: &Window{Session: &Session{Gap: pipelines.Duration(time.Second)}}, TimeField: "ts",
		AllowedLateness: pipelines.Duration(MaxAllowedLateness)})
	h := newHarness(t, a.Transform())
	var in []engine.Record
	for i := range MaxOpenWindowsPerKey {
		in = append(in, rec("k", time.Duration(i)*10*time.Second, 1, "u"))
	}
	if _, rej := h.run(in); len(rej) > 0 {
		t.Fatalf("rejected under the limit: %s", rej[0].Reason)
	}
	h.commit()
	_, rej := h.run([]engine.Record{rec("k", -time.Hour, 1, "u"), rec("k", 500*time.Millisecond, 1, "u")})
	if len(rej) != 1 || !strings.Contains(rej[0].Reason, "1000 open sessions, the limit (MaxOpenWindowsPerKey)") {
		t.Fatalf("rejected %v; want only the record opening a new session", rej)
	}
}
