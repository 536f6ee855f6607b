package sinktest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// RunTasks runs the suite for engine.TaskSink: the harness's New must
// return sinks that implement it. Instances made by one harness share the
// destination, as the processes of one pipeline do.
func RunTasks(t *testing.T, newHarness func(t *testing.T) Harness) {
	for _, tc := range taskCases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.run(&suite{t: t, h: h})
		})
	}
}

var taskCases = []struct {
	name string
	run  func(s *suite)
}{
	{"each task reopens at its own checkpoint", testTasksReopen},
	{"one fenced task refuses the whole round", testTaskFencesRound},
	{"processes commit disjoint tasks at once", testTasksDisjoint},
	{"racing commits of one task: exactly one wins", testTaskRace},
	{"re-commit of stored checkpoints is a no-op", testTasksRecommit},
	{"crash before or after a round's commit", testTasksCrash},
	{"abort leaves the round invisible", testTasksAbort},
	{"rounds count from 1 again after every open", testTasksRoundsRestart},
	{"single-chain state is where tasks start", testTasksFromSingleChain},
}

// tinst is one process's task sink.
type tinst struct {
	s    *suite
	sink engine.TaskSink
}

func (s *suite) openTasks(tasks ...engine.Task) (*tinst, map[engine.Task]engine.Checkpoint) {
	s.t.Helper()
	sink, ok := s.h.New(s.t).(engine.TaskSink)
	if !ok {
		s.t.Fatal("the sink does not implement engine.TaskSink")
	}
	s.t.Cleanup(func() { sink.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cps, err := sink.OpenTasks(ctx, "p", tasks)
	if err != nil {
		s.t.Fatalf("OpenTasks(%v): %v", tasks, err)
	}
	return &tinst{s: s, sink: sink}, cps
}

// freshTasks opens tasks and requires want as their checkpoints.
func (s *suite) freshTasks(want map[engine.Task]engine.Checkpoint, tasks ...engine.Task) *tinst {
	s.t.Helper()
	i, cps := s.openTasks(tasks...)
	if !equalCheckpoints(cps, want) {
		s.t.Fatalf("OpenTasks(%v) = %v; want %v", tasks, cps, want)
	}
	return i
}

func equalCheckpoints(a, b map[engine.Task]engine.Checkpoint) bool {
	return maps.EqualFunc(a, b, func(x, y engine.Checkpoint) bool {
		return x.Epoch == y.Epoch && (len(x.At) == 0 && len(y.At) == 0 || x.At.Equal(y.At))
	})
}

func (i *tinst) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	i.s.t.Cleanup(cancel)
	return ctx
}

// write stages one record per value, read from partition p of topic in.
func (i *tinst) write(round uint64, p int32, values ...string) {
	i.s.t.Helper()
	recs := make([]engine.Record, len(values))
	for n, v := range values {
		recs[n] = engine.Record{Topic: "in", Partition: p, Offset: int64(n), Value: []byte(v)}
	}
	if err := i.sink.Write(i.ctx(), round, recs); err != nil {
		i.s.t.Fatalf("Write(round %d): %v", round, err)
	}
	for _, r := range recs {
		for n := range r.Value {
			r.Value[n] = '#'
		}
	}
}

func (i *tinst) commit(round uint64, cps map[engine.Task]engine.Checkpoint) error {
	return i.sink.CommitTasks(i.ctx(), round, cps)
}

func (i *tinst) mustCommit(round uint64, cps map[engine.Task]engine.Checkpoint) {
	i.s.t.Helper()
	if err := i.commit(round, cps); err != nil {
		i.s.t.Fatalf("CommitTasks(round %d, %v): %v", round, cps, err)
	}
}

func (i *tinst) mustFence(round uint64, cps map[engine.Task]engine.Checkpoint) {
	i.s.t.Helper()
	if err := i.commit(round, cps); !errors.Is(err, engine.ErrFenced) {
		i.s.t.Fatalf("CommitTasks(round %d, %v) = %v; want an error wrapping engine.ErrFenced", round, cps, err)
	}
}

// tpos is task t's positions after its epoch e: partition t of topic in.
func tpos(t engine.Task, e uint64) engine.Positions {
	return engine.Positions{{Topic: "in", Partition: int32(t)}: int64(e) * 10}
}

// cp returns the checkpoints of tasks at epoch e.
func cp(e uint64, tasks ...engine.Task) map[engine.Task]engine.Checkpoint {
	out := map[engine.Task]engine.Checkpoint{}
	for _, t := range tasks {
		out[t] = engine.Checkpoint{Epoch: e, At: tpos(t, e)}
	}
	return out
}

// other is cp with other positions: another process's commit of the same
// epochs, which must not pass for a retry of this one.
func other(e uint64, tasks ...engine.Task) map[engine.Task]engine.Checkpoint {
	out := cp(e, tasks...)
	for t, c := range out {
		c.At = tpos(t, e)
		c.At[engine.TopicPartition{Topic: "in", Partition: int32(t)}]++
		out[t] = c
	}
	return out
}

func none() map[engine.Task]engine.Checkpoint { return map[engine.Task]engine.Checkpoint{} }

func testTasksReopen(s *suite) {
	a := s.freshTasks(none(), 0, 1)
	var want []string
	for e := uint64(1); e <= 3; e++ {
		for _, p := range []int32{0, 1} {
			v := vals(fmt.Sprintf("e%d-p%d", e, p), 3)
			a.write(e, p, v...)
			want = append(want, v...)
		}
		a.mustCommit(e, cp(e, 0, 1))
	}
	a.sink.Close()
	s.expect(want...)
	s.freshTasks(cp(3, 0, 1), 0, 1, 2)
	s.freshTasks(cp(3, 1), 1, 5)
}

func testTaskFencesRound(s *suite) {
	a := s.freshTasks(none(), 0, 1)
	b := s.freshTasks(none(), 1)
	b.write(1, 1, "b1")
	b.mustCommit(1, cp(1, 1))
	a.write(1, 0, "a0")
	a.write(1, 1, "a1")
	a.mustFence(1, cp(1, 0, 1))
	s.expect("b1")
	s.freshTasks(cp(1, 1), 0, 1) // task 0 unchanged: still nothing
}

func testTasksDisjoint(s *suite) {
	const rounds = 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	var want []string
	for n, tasks := range [][]engine.Task{{0, 1}, {2, 3}, {4}} {
		i := s.freshTasks(none(), tasks...)
		wg.Go(func() {
			for r := uint64(1); r <= rounds; r++ {
				for _, t := range tasks {
					v := fmt.Sprintf("i%d-t%d-r%d", n, t, r)
					i.write(r, int32(t), v)
					mu.Lock()
					want = append(want, v)
					mu.Unlock()
				}
				if err := i.commit(r, cp(r, tasks...)); err != nil {
					s.t.Errorf("instance %d, round %d: %v", n, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if s.t.Failed() {
		return
	}
	s.expect(want...)
	s.freshTasks(cp(rounds, 0, 1, 2, 3, 4), 0, 1, 2, 3, 4)
}

func testTaskRace(s *suite) {
	const rounds = 5
	var want []string
	state := none() // what is committed
	for r := uint64(1); r <= rounds; r++ {
		a := s.freshTasks(state, 0, 1)
		b := s.freshTasks(pick(state, 1), 1)
		a.write(r, 0, fmt.Sprintf("a0-%d", r))
		a.write(r, 1, fmt.Sprintf("a1-%d", r))
		b.write(r, 1, fmt.Sprintf("b1-%d", r))
		errs := make([]error, 2)
		var wg sync.WaitGroup
		wg.Go(func() { errs[0] = a.commit(r, cp(r, 0, 1)) })
		wg.Go(func() { errs[1] = b.commit(r, other(r, 1)) })
		wg.Wait()
		won := 0
		for n, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, engine.ErrFenced):
				s.t.Fatalf("round %d, instance %d: %v; want nil or ErrFenced", r, n, err)
			}
		}
		if won != 1 {
			s.t.Fatalf("round %d: %d instances committed task 1's epoch %d; want exactly 1", r, won, r)
		}
		if errs[0] == nil {
			want = append(want, fmt.Sprintf("a0-%d", r), fmt.Sprintf("a1-%d", r))
			state = cp(r, 0, 1)
		} else {
			want = append(want, fmt.Sprintf("b1-%d", r))
			// a's round failed as a whole: task 0 catches up alone.
			c := s.freshTasks(pick(state, 0), 0)
			c.mustCommit(1, cp(r, 0))
			state = cp(r, 0)
			state[1] = other(r, 1)[1]
		}
		a.sink.Close()
		b.sink.Close()
		s.expect(want...)
	}
	s.freshTasks(state, 0, 1)
}

// pick returns the checkpoints of tasks in cps.
func pick(cps map[engine.Task]engine.Checkpoint, tasks ...engine.Task) map[engine.Task]engine.Checkpoint {
	out := none()
	for _, t := range tasks {
		if c, ok := cps[t]; ok {
			out[t] = c
		}
	}
	return out
}

func testTasksRecommit(s *suite) {
	a := s.freshTasks(none(), 0, 1)
	a.write(1, 0, "x")
	a.write(1, 1, "y")
	a.mustCommit(1, cp(1, 0, 1))
	a.mustCommit(1, cp(1, 0, 1)) // the acknowledgement was lost; the engine retries
	s.expect("x", "y")
	stale := cp(1, 0, 1)
	stale[1] = engine.Checkpoint{Epoch: 1, At: tpos(1, 7)}
	a.mustFence(1, stale) // same epoch, other positions: someone else's
	s.freshTasks(cp(1, 0, 1), 0, 1)
}

func testTasksCrash(s *suite) {
	a := s.freshTasks(none(), 0, 1)
	a.write(1, 0, "one")
	a.mustCommit(1, cp(1, 0, 1))
	a.write(2, 1, "lost")
	if s.h.Crash != nil {
		s.h.Crash(s.t, a.sink)
	}
	s.expect("one")
	b := s.freshTasks(cp(1, 0, 1), 0, 1)
	b.write(1, 1, "redone")
	b.mustCommit(1, cp(2, 0, 1))
	if s.h.Crash != nil {
		s.h.Crash(s.t, b.sink)
	}
	s.expect("one", "redone")
	s.freshTasks(cp(2, 0, 1), 0, 1)
}

func testTasksAbort(s *suite) {
	a := s.freshTasks(none(), 0)
	a.write(1, 0, "gone")
	if err := a.sink.Abort(a.ctx(), 1); err != nil {
		s.t.Fatal(err)
	}
	s.expect()
	a.write(1, 0, "kept")
	a.mustCommit(1, cp(1, 0))
	s.expect("kept")
}

func testTasksRoundsRestart(s *suite) {
	i, _ := s.openTasks(0, 1)
	want := []string{}
	for open := range 3 {
		for r := uint64(1); r <= 2; r++ {
			v := fmt.Sprintf("open%d-r%d", open, r)
			i.write(r, 0, v)
			want = append(want, v)
			i.mustCommit(r, cp(uint64(open)*2+r, 0, 1))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cps, err := i.sink.OpenTasks(ctx, "p", []engine.Task{0, 1})
		cancel()
		if err != nil {
			s.t.Fatal(err)
		}
		if wantCP := cp(uint64(open)*2+2, 0, 1); !equalCheckpoints(cps, wantCP) {
			s.t.Fatalf("OpenTasks again = %v; want %v", cps, wantCP)
		}
	}
	s.expect(want...)
}

func testTasksFromSingleChain(s *suite) {
	old := s.fresh("p", 0, nil)
	for e := uint64(1); e <= 3; e++ {
		old.write(e, fmt.Sprintf("old%d", e))
		old.mustCommit(e, engine.Positions{{Topic: "in", Partition: 0}: int64(e), {Topic: "in", Partition: 1}: 10 + int64(e)})
	}
	old.sink.Close()
	derived := map[engine.Task]engine.Checkpoint{
		0: {Epoch: 3, At: engine.Positions{{Topic: "in", Partition: 0}: 3}},
		1: {Epoch: 3, At: engine.Positions{{Topic: "in", Partition: 1}: 13}},
		2: {Epoch: 3},
	}
	a := s.freshTasks(derived, 0, 1, 2)
	late := s.freshTasks(map[engine.Task]engine.Checkpoint{1: derived[1]}, 1)
	a.write(1, 1, "new")
	a.mustCommit(1, cp(4, 0, 1, 2))
	late.write(1, 1, "late")
	late.mustFence(1, other(4, 1))
	s.expect("old1", "old2", "old3", "new")
	s.freshTasks(cp(4, 0, 1, 2), 0, 1, 2)
}
