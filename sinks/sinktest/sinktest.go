package sinktest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// Harness is one fresh destination for one subtest.
type Harness struct {
	// New returns a new, unopened sink instance writing to the destination.
	// The suite closes it, except after a simulated crash.
	New func(t *testing.T) engine.Sink
	// Read returns the values of every record visible in the destination,
	// in any order.
	Read func(t *testing.T) []string
	// ReadDeadLetters returns the values of the committed dead letters.
	// Leave it nil for a sink without engine.DeadLetterSink.
	ReadDeadLetters func(t *testing.T) []string
	// Crash ends s the way a killed process would; s is not used again.
	// Nil means: drop s without Close or Abort (it is closed at the end of
	// the test only to release resources).
	Crash func(t *testing.T, s engine.Sink)
}

// Run runs the suite; newHarness is called once per subtest.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.run(&suite{t: t, h: h})
		})
	}
}

var cases = []struct {
	name string
	run  func(s *suite)
}{
	{"reopen returns the last epoch and positions", testReopen},
	{"commit needs the previous epoch stored", testContiguity},
	{"stale writer is fenced and changes nothing", testFencing},
	{"racing writers: exactly one commits", testRace},
	{"re-commit of the stored epoch is a no-op", testRecommit},
	{"crash before commit loses nothing and shows nothing", testCrashBeforeCommit},
	{"crash after commit keeps the epoch exactly once", testCrashAfterCommit},
	{"abort leaves nothing visible", testAbort},
	{"epochs without records commit positions", testZeroRecords},
	{"pipelines sharing a destination are isolated", testIsolation},
	{"several writes per epoch", testSeveralWrites},
	{"many epochs", testManyEpochs},
	{"dead letters commit with their epoch", testDeadLetters},
}

type suite struct {
	t *testing.T
	h Harness
}

// inst is one sink instance, as one process of a pipeline would hold it.
type inst struct {
	s        *suite
	sink     engine.Sink
	pipeline string
}

func (s *suite) open(pipeline string) (*inst, uint64, engine.Positions) {
	s.t.Helper()
	sink := s.h.New(s.t)
	closed := false
	s.t.Cleanup(func() {
		if !closed {
			sink.Close()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	epoch, at, err := sink.Open(ctx, pipeline)
	if err != nil {
		s.t.Fatalf("Open(%q): %v", pipeline, err)
	}
	return &inst{s: s, sink: sink, pipeline: pipeline}, epoch, at
}

// fresh opens an instance and requires it to report (epoch, at).
func (s *suite) fresh(pipeline string, epoch uint64, at engine.Positions) *inst {
	s.t.Helper()
	i, e, p := s.open(pipeline)
	if e != epoch || !p.Equal(at) {
		s.t.Fatalf("Open(%q) = epoch %d, positions %v; want %d, %v", pipeline, e, p, epoch, at)
	}
	return i
}

func (i *inst) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	i.s.t.Cleanup(cancel)
	return ctx
}

// write stages one record per value and then scribbles over the caller's
// slices: a sink must not keep them after Write returns.
func (i *inst) write(epoch uint64, values ...string) {
	i.s.t.Helper()
	recs := make([]engine.Record, len(values))
	for n, v := range values {
		recs[n] = engine.Record{
			Topic: "in", Partition: int32(n % 2), Offset: int64(n),
			Key: []byte(fmt.Sprintf("k-%d", n%3)), Value: []byte(v),
			Headers: []engine.Header{{Key: "h", Value: []byte("x")}},
			Time:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		}
	}
	if err := i.sink.Write(i.ctx(), epoch, recs); err != nil {
		i.s.t.Fatalf("Write(epoch %d): %v", epoch, err)
	}
	for _, r := range recs {
		for n := range r.Value {
			r.Value[n] = '#'
		}
	}
}

func (i *inst) commit(epoch uint64, until engine.Positions) error {
	return i.sink.Commit(i.ctx(), epoch, until)
}

func (i *inst) mustCommit(epoch uint64, until engine.Positions) {
	i.s.t.Helper()
	if err := i.commit(epoch, until); err != nil {
		i.s.t.Fatalf("Commit(epoch %d): %v", epoch, err)
	}
}

func (i *inst) mustFence(epoch uint64, until engine.Positions) {
	i.s.t.Helper()
	err := i.commit(epoch, until)
	if !errors.Is(err, engine.ErrFenced) {
		i.s.t.Fatalf("Commit(epoch %d) = %v; want an error wrapping engine.ErrFenced", epoch, err)
	}
}

func (i *inst) crash() {
	if i.s.h.Crash != nil {
		i.s.h.Crash(i.s.t, i.sink)
	}
	i.sink = nil
}

func (s *suite) expect(want ...string) {
	s.t.Helper()
	got := s.h.Read(s.t)
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		s.t.Fatalf("visible output:\n got %q\nwant %q", got, want)
	}
}

// pos returns positions for two partitions after epoch e of ten records.
func pos(e int64) engine.Positions {
	return engine.Positions{{Topic: "in", Partition: 0}: 5 * e, {Topic: "in", Partition: 1}: 5*e + 1}
}

func vals(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

func testReopen(s *suite) {
	a := s.fresh("p", 0, nil)
	var want []string
	for e := uint64(1); e <= 3; e++ {
		v := vals(fmt.Sprintf("e%d", e), 10)
		want = append(want, v...)
		a.write(e, v...)
		a.mustCommit(e, pos(int64(e)))
	}
	a.sink.Close()
	s.fresh("p", 3, pos(3))
	s.expect(want...)
}

func testContiguity(s *suite) {
	a := s.fresh("p", 0, nil)
	a.write(2, "early")
	a.mustFence(2, pos(2))
	s.expect()
	a.sink.Abort(a.ctx(), 2)
	a.write(1, "one")
	a.mustCommit(1, pos(1))
	a.write(3, "skipped")
	a.mustFence(3, pos(3))
	s.expect("one")
	s.fresh("p", 1, pos(1))
}

func testFencing(s *suite) {
	a := s.fresh("p", 0, nil)
	a.write(1, "a1")
	a.mustCommit(1, pos(1))
	stale := s.fresh("p", 1, pos(1))
	b := s.fresh("p", 1, pos(1))
	b.write(2, "b2")
	b.mustCommit(2, pos(2))
	stale.write(2, "stale2")
	stale.mustFence(2, pos(20)) // different positions: not a lost-ack retry
	stale.sink.Abort(stale.ctx(), 2)
	stale.write(3, "stale3")
	stale.mustFence(3, pos(3))
	s.expect("a1", "b2")
	s.fresh("p", 2, pos(2))
}

func testRace(s *suite) {
	const rounds = 5
	var want []string
	var last engine.Positions
	for round := range rounds {
		epoch := uint64(round + 1)
		a := s.fresh("p", epoch-1, last)
		b := s.fresh("p", epoch-1, last)
		a.write(epoch, fmt.Sprintf("a%d", epoch))
		b.write(epoch, fmt.Sprintf("b%d", epoch))
		errs := make(chan error, 2)
		for n, i := range []*inst{a, b} {
			go func() { errs <- i.commit(epoch, pos(int64(epoch)*10+int64(n))) }()
		}
		var won int
		for range 2 {
			switch err := <-errs; {
			case err == nil:
				won++
			case !errors.Is(err, engine.ErrFenced):
				s.t.Fatalf("round %d: Commit = %v; want nil or ErrFenced", round, err)
			}
		}
		if won != 1 {
			s.t.Fatalf("round %d: %d writers committed epoch %d; want exactly 1", round, won, epoch)
		}
		c, e, at := s.open("p")
		c.sink.Close()
		if e != epoch || !(at.Equal(pos(int64(epoch)*10)) || at.Equal(pos(int64(epoch)*10+1))) {
			s.t.Fatalf("round %d: Open = %d, %v; want epoch %d with one writer's positions", round, e, at, epoch)
		}
		winner := "a"
		if at.Equal(pos(int64(epoch)*10 + 1)) {
			winner = "b"
		}
		want = append(want, fmt.Sprintf("%s%d", winner, epoch))
		last = at
		a.sink.Close()
		b.sink.Close()
	}
	s.expect(want...)
}

func testRecommit(s *suite) {
	a := s.fresh("p", 0, nil)
	a.write(1, "one", "two")
	a.mustCommit(1, pos(1))
	a.mustCommit(1, pos(1)) // the acknowledgement was lost; the engine retries
	s.expect("one", "two")
	a.mustFence(1, pos(7)) // same epoch, other positions: someone else's
	b := s.fresh("p", 1, pos(1))
	b.write(1, "one", "two") // a replay of the same batch after a restart
	b.mustCommit(1, pos(1))
	s.expect("one", "two")
	b.write(2, "three")
	b.mustCommit(2, pos(2))
	s.expect("one", "two", "three")
}

func testCrashBeforeCommit(s *suite) {
	a := s.fresh("p", 0, nil)
	a.write(1, "one")
	a.mustCommit(1, pos(1))
	a.write(2, "lost")
	a.crash()
	s.expect("one")
	b := s.fresh("p", 1, pos(1))
	b.write(2, "redone") // transforms may be non-deterministic
	b.mustCommit(2, pos(2))
	s.expect("one", "redone")
	s.fresh("p", 2, pos(2))
}

func testCrashAfterCommit(s *suite) {
	a := s.fresh("p", 0, nil)
	a.write(1, "one")
	a.mustCommit(1, pos(1))
	a.write(2, "two")
	a.mustCommit(2, pos(2))
	a.crash()
	b := s.fresh("p", 2, pos(2))
	b.mustCommit(2, pos(2)) // the engine may retry the commit it never heard back from
	s.expect("one", "two")
	b.write(3, "three")
	b.mustCommit(3, pos(3))
	s.expect("one", "two", "three")
}

func testAbort(s *suite) {
	a := s.fresh("p", 0, nil)
	a.write(1, "aborted")
	if err := a.sink.Abort(a.ctx(), 1); err != nil {
		s.t.Fatalf("Abort: %v", err)
	}
	s.expect()
	a.write(1, "one")
	a.mustCommit(1, pos(1))
	a.write(2, "aborted2")
	if err := a.sink.Abort(a.ctx(), 2); err != nil {
		s.t.Fatalf("Abort: %v", err)
	}
	a.mustCommit(2, pos(2)) // nothing staged: an epoch without output
	s.expect("one")
	a.sink.Close()
	s.fresh("p", 2, pos(2))
	s.expect("one")
}

func testZeroRecords(s *suite) {
	a := s.fresh("p", 0, nil)
	for e := uint64(1); e <= 3; e++ {
		a.mustCommit(e, pos(int64(e)))
	}
	a.sink.Close()
	b := s.fresh("p", 3, pos(3))
	b.write(4, "four")
	b.mustCommit(4, pos(4))
	b.mustCommit(5, pos(5))
	s.expect("four")
	s.fresh("p", 5, pos(5))
}

func testIsolation(s *suite) {
	a := s.fresh("alpha", 0, nil)
	b := s.fresh("beta", 0, nil)
	// A name that extends another must not match its files either.
	c := s.fresh("alpha-2", 0, nil)
	a.write(1, "a1")
	a.mustCommit(1, pos(1))
	a.write(2, "a2")
	a.mustCommit(2, pos(2))
	b.write(1, "b1")
	b.mustCommit(1, pos(11))
	c.mustCommit(1, pos(21))
	a.sink.Close()
	b.sink.Close()
	c.sink.Close()
	s.fresh("alpha", 2, pos(2))
	s.fresh("beta", 1, pos(11))
	s.fresh("alpha-2", 1, pos(21))
	s.fresh("gamma", 0, nil)
	s.expect("a1", "a2", "b1")
}

func testSeveralWrites(s *suite) {
	a := s.fresh("p", 0, nil)
	a.write(1, "x1", "x2")
	a.write(1)
	a.write(1, "x3")
	a.mustCommit(1, pos(1))
	s.expect("x1", "x2", "x3")
}

func testManyEpochs(s *suite) {
	a := s.fresh("p", 0, nil)
	var want []string
	for e := uint64(1); e <= 12; e++ {
		if e%3 != 0 {
			v := fmt.Sprintf("e%d", e)
			a.write(e, v)
			want = append(want, v)
		}
		a.mustCommit(e, pos(int64(e)))
	}
	a.crash()
	s.fresh("p", 12, pos(12))
	s.expect(want...)
}

func (i *inst) reject(epoch uint64, values ...string) {
	i.s.t.Helper()
	dl, ok := i.sink.(engine.DeadLetterSink)
	if !ok {
		i.s.t.Fatalf("%T has ReadDeadLetters in its harness but does not implement engine.DeadLetterSink", i.sink)
	}
	rej := make([]engine.Rejected, len(values))
	for n, v := range values {
		rej[n] = engine.Rejected{
			Record: engine.Record{Topic: "in", Offset: int64(n), Value: []byte(v)},
			Reason: "test rejects " + v, Plugin: "sinktest",
		}
	}
	if err := dl.WriteRejected(i.ctx(), epoch, rej); err != nil {
		i.s.t.Fatalf("WriteRejected(epoch %d): %v", epoch, err)
	}
}

func (s *suite) expectDead(want ...string) {
	s.t.Helper()
	got := s.h.ReadDeadLetters(s.t)
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		s.t.Fatalf("dead letters:\n got %q\nwant %q", got, want)
	}
}

func testDeadLetters(s *suite) {
	if s.h.ReadDeadLetters == nil {
		s.t.Skip("the harness has no ReadDeadLetters: the sink has no dead-letter support")
	}
	a := s.fresh("p", 0, nil)
	a.reject(1, "aborted")
	a.sink.Abort(a.ctx(), 1)
	a.write(1, "one")
	a.reject(1, "bad1")
	s.expectDead()
	a.mustCommit(1, pos(1))
	s.expectDead("bad1")
	a.reject(2, "only-rejects") // an epoch whose whole output was rejected
	a.mustCommit(2, pos(2))
	s.expectDead("bad1", "only-rejects")
	a.reject(3, "lost")
	a.crash()
	stale := s.fresh("p", 2, pos(2))
	b := s.fresh("p", 2, pos(2))
	s.expectDead("bad1", "only-rejects")
	b.reject(3, "bad3")
	b.write(3, "three")
	b.mustCommit(3, pos(3))
	stale.reject(3, "stale")
	stale.mustFence(3, pos(33))
	s.expect("one", "three")
	s.expectDead("bad1", "only-rejects", "bad3")
}
