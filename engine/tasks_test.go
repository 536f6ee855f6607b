package engine_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicehq/sluice/engine"
)

// Pipelines split into tasks, with in-memory stand-ins for a consumer
// group, a partitioned source and a sink shared by several processes.

// taskStore is the state several processes' sinks share: each task's
// checkpoint and how often each value became visible.
type taskStore struct {
	mu      sync.Mutex
	cps     map[engine.Task]engine.Checkpoint
	seen    map[string]int
	fenced  int // commits refused
	commits int
}

func newTaskStore() *taskStore {
	return &taskStore{cps: map[engine.Task]engine.Checkpoint{}, seen: map[string]int{}}
}

// taskSink is one process's sink over a taskStore.
type taskSink struct {
	store  *taskStore
	staged map[uint64][]string
}

func (s *taskSink) Open(context.Context, string) (uint64, engine.Positions, error) {
	return 0, nil, fmt.Errorf("taskSink: Open called on a pipeline split into tasks")
}

func (s *taskSink) OpenTasks(_ context.Context, _ string, tasks []engine.Task) (map[engine.Task]engine.Checkpoint, error) {
	s.staged = map[uint64][]string{}
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	out := map[engine.Task]engine.Checkpoint{}
	for _, t := range tasks {
		if cp, ok := s.store.cps[t]; ok {
			out[t] = engine.Checkpoint{Epoch: cp.Epoch, At: cp.At.Clone()}
		}
	}
	return out, nil
}

func (s *taskSink) Write(_ context.Context, round uint64, recs []engine.Record) error {
	for _, r := range recs {
		s.staged[round] = append(s.staged[round], string(r.Value))
	}
	return nil
}

func (s *taskSink) Commit(context.Context, uint64, engine.Positions) error {
	return fmt.Errorf("taskSink: Commit called on a pipeline split into tasks")
}

func (s *taskSink) CommitTasks(_ context.Context, round uint64, cps map[engine.Task]engine.Checkpoint) error {
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	for t, cp := range cps {
		if have := s.store.cps[t].Epoch; have != cp.Epoch-1 {
			s.store.fenced++
			delete(s.staged, round)
			return fmt.Errorf("task %d holds epoch %d, not %d: %w", t, have, cp.Epoch-1, engine.ErrFenced)
		}
	}
	for t, cp := range cps {
		s.store.cps[t] = engine.Checkpoint{Epoch: cp.Epoch, At: cp.At.Clone()}
	}
	for _, v := range s.staged[round] {
		s.store.seen[v]++
	}
	delete(s.staged, round)
	s.store.commits++
	return nil
}

func (s *taskSink) Abort(_ context.Context, round uint64) error {
	delete(s.staged, round)
	return nil
}

func (s *taskSink) Close() error { return nil }

// taskSource serves offsets 0..perPart-1 of partitions 0..partitions-1 of
// one topic, a few records per partition and call, only of its tasks.
type taskSource struct {
	partitions int32
	perPart    int64
	next       map[engine.TopicPartition]int64
}

func (s *taskSource) Open(ctx context.Context, from engine.Positions) error {
	return fmt.Errorf("taskSource: Open called on a pipeline split into tasks")
}

func (s *taskSource) OpenTasks(_ context.Context, tasks []engine.Task, from engine.Positions) error {
	s.next = map[engine.TopicPartition]int64{}
	for _, t := range tasks {
		tp := engine.TopicPartition{Topic: fakeTopic, Partition: int32(t)}
		s.next[tp] = from[tp] // absent: 0, the start
	}
	return nil
}

func (s *taskSource) Next(ctx context.Context, _ engine.Limits) ([]engine.Record, engine.Positions, error) {
	var recs []engine.Record
	for tp, off := range s.next {
		for n := 0; n < 5 && off < s.perPart; n++ {
			recs = append(recs, engine.Record{Topic: tp.Topic, Partition: tp.Partition, Offset: off,
				Value: fmt.Appendf(nil, "%d:%d", tp.Partition, off)})
			off++
		}
		s.next[tp] = off
	}
	if len(recs) == 0 {
		select {
		case <-ctx.Done():
		case <-time.After(time.Millisecond):
		}
	}
	return recs, engine.Positions(s.next).Clone(), nil
}

func (s *taskSource) Committed(context.Context, engine.Positions) error { return nil }
func (s *taskSource) Close() error                                      { return nil }

// taskGroup hands tasks to members as a consumer group would.
type taskGroup struct {
	mu      sync.Mutex
	members map[string]*taskMember
}

type taskMember struct {
	g        *taskGroup
	name     string
	tasks    []engine.Task // assigned now
	returned []engine.Task // what Assigned last returned
	changed  chan struct{}
	asked    chan struct{} // closed by every Assigned call
}

func (g *taskGroup) member(name string, tasks ...engine.Task) *taskMember {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := &taskMember{g: g, name: name, tasks: tasks, changed: make(chan struct{}), asked: make(chan struct{})}
	if g.members == nil {
		g.members = map[string]*taskMember{}
	}
	g.members[name] = m
	return m
}

func (m *taskMember) Assigned(ctx context.Context) ([]engine.Task, error) {
	m.g.mu.Lock()
	defer m.g.mu.Unlock()
	m.returned = slices.Clone(m.tasks)
	slices.Sort(m.returned)
	m.changed = make(chan struct{})
	close(m.asked)
	m.asked = make(chan struct{})
	return m.returned, nil
}

func (m *taskMember) Changed() <-chan struct{} {
	m.g.mu.Lock()
	defer m.g.mu.Unlock()
	return m.changed
}

// set gives m tasks and tells it.
func (m *taskMember) set(tasks ...engine.Task) {
	m.g.mu.Lock()
	defer m.g.mu.Unlock()
	m.tasks = tasks
	select {
	case <-m.changed: // already told, not asked since
	default:
		close(m.changed)
	}
}

// released waits until m has called Assigned since set, that is, let go of
// what it lost.
func (m *taskMember) released(t *testing.T) {
	t.Helper()
	m.g.mu.Lock()
	asked := m.asked
	m.g.mu.Unlock()
	select {
	case <-asked:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not let go of its revoked tasks", m.name)
	}
}

func startTaskPipeline(t *testing.T, name string, m *taskMember, store *taskStore, src *taskSource) (stop func()) {
	t.Helper()
	p, err := engine.New(engine.Config{
		Name: "tasks", Delivery: engine.ExactlyOnce, Tasks: m,
		Source: src, Sink: &taskSink{store: store}, MinBackoff: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *taskStore) check(t *testing.T, partitions int32, perPart int64) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range partitions {
		for i := range perPart {
			if n := s.seen[fmt.Sprintf("%d:%d", p, i)]; n != 1 {
				t.Fatalf("record %d:%d visible %d times", p, i, n)
			}
		}
	}
	if len(s.seen) != int(partitions)*int(perPart) {
		t.Fatalf("%d distinct records visible, want %d", len(s.seen), int(partitions)*int(perPart))
	}
}

func (s *taskStore) done(partitions int32, perPart int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range partitions {
		tp := engine.TopicPartition{Topic: fakeTopic, Partition: p}
		if s.cps[engine.Task(p)].At[tp] != perPart {
			return false
		}
	}
	return true
}

// position is where task p's partition stands in the store.
func (s *taskStore) position(p int32) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cps[engine.Task(p)].At[engine.TopicPartition{Topic: fakeTopic, Partition: p}]
}

func (s *taskStore) progress() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// TestTasksMoveBetweenProcesses: tasks move from one pipeline to another
// mid-stream, each only once its old owner let go of it; every record
// becomes visible exactly once and each task's chain continues where the
// other process left it.
func TestTasksMoveBetweenProcesses(t *testing.T) {
	const partitions, perPart = 8, 4000
	store, g := newTaskStore(), &taskGroup{}
	a := g.member("a", 0, 1, 2, 3, 4, 5, 6, 7)
	stopA := startTaskPipeline(t, "a", a, store, &taskSource{partitions: partitions, perPart: perPart})
	waitFor(t, "a's first commits", func() bool { return store.progress() > 1000 })

	// A second process joins: four tasks move, after a lets go of them.
	b := g.member("b")
	stopB := startTaskPipeline(t, "b", b, store, &taskSource{partitions: partitions, perPart: perPart})
	a.set(0, 1, 2, 3)
	a.released(t)
	b.set(4, 5, 6, 7)
	moved := store.position(7)
	waitFor(t, "b's commits", func() bool { return store.position(7) > moved })

	// And one moves back.
	b.set(5, 6, 7)
	b.released(t)
	a.set(0, 1, 2, 3, 4)
	waitFor(t, "every record", func() bool { return store.done(partitions, perPart) })
	stopA()
	stopB()
	store.check(t, partitions, perPart)
	if store.fenced != 0 {
		t.Fatalf("%d commits fenced although every move waited for the release", store.fenced)
	}
}

// TestZombieTaskIsFenced: a process keeps committing a task the group gave
// to another process without waiting for it (it was paused past its session
// timeout and does not know yet). Its commits are refused, none of its
// output becomes visible twice, and it carries on with what it still holds.
func TestZombieTaskIsFenced(t *testing.T) {
	const partitions, perPart = 4, 6000
	store, g := newTaskStore(), &taskGroup{}
	a := g.member("a", 0, 1, 2, 3)
	stopA := startTaskPipeline(t, "a", a, store, &taskSource{partitions: partitions, perPart: perPart})
	waitFor(t, "a's first commits", func() bool { return store.progress() > 1000 })

	b := g.member("b", 3) // a still believes it holds task 3
	stopB := startTaskPipeline(t, "b", b, store, &taskSource{partitions: partitions, perPart: perPart})
	waitFor(t, "a fenced", func() bool {
		store.mu.Lock()
		defer store.mu.Unlock()
		return store.fenced > 0
	})
	a.set(0, 1, 2) // a learns it lost task 3
	waitFor(t, "every record", func() bool { return store.done(partitions, perPart) })
	stopA()
	stopB()
	store.check(t, partitions, perPart)
}

// TestTaskMetricsAndStatusFollowTheAssignment: the per-task epoch gauge
// and Status follow the tasks the process runs: set on every commit, the
// series of a task that moved away deleted, and none left once the
// pipeline stops.
func TestTaskMetricsAndStatusFollowTheAssignment(t *testing.T) {
	const partitions, perPart = 4, 200
	store, g := newTaskStore(), &taskGroup{}
	a := g.member("a", 0, 1, 2, 3)
	m := engine.NewMetrics(nil)
	p, err := engine.New(engine.Config{
		Name: "tasks", Delivery: engine.ExactlyOnce, Tasks: a, Metrics: m,
		Source: &endsSource{taskSource{partitions: partitions, perPart: perPart}}, Sink: &taskSink{store: store},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	// gauged returns the tasks with a series and their values.
	gauged := func() map[string]float64 {
		out := map[string]float64{}
		ch := make(chan prometheus.Metric, 16)
		m.TaskCommittedEpoch.Collect(ch)
		close(ch)
		for metric := range ch {
			var pb dto.Metric
			metric.Write(&pb)
			for _, l := range pb.GetLabel() {
				if l.GetName() == "task" {
					out[l.GetValue()] = pb.GetGauge().GetValue()
				}
			}
		}
		return out
	}
	// matches reports whether the gauges hold the store's epochs of
	// exactly tasks, and Status the same checkpoints.
	matches := func(tasks ...engine.Task) bool {
		st, got := p.Status(), gauged()
		if len(got) != len(tasks) || len(st.Tasks) != len(tasks) {
			return false
		}
		store.mu.Lock()
		defer store.mu.Unlock()
		for _, task := range tasks {
			cp := store.cps[task]
			if got[task.String()] != float64(cp.Epoch) || st.Tasks[task].Epoch != cp.Epoch || !maps.Equal(st.Tasks[task].At, cp.At) {
				return false
			}
		}
		return true
	}
	waitFor(t, "every task read to its end", func() bool { return store.done(partitions, perPart) })
	waitFor(t, "gauges and status of tasks 0-3", func() bool { return matches(0, 1, 2, 3) })
	// The pipeline-wide epoch gauge would show the round number, which
	// means nothing across processes: a split pipeline has no series.
	if n := testutil.CollectAndCount(m.CommittedEpoch); n != 0 {
		t.Fatalf("sluice_committed_epoch has %d series for a pipeline split into tasks, want none", n)
	}
	ends := p.Status().Ends
	for part := range int32(partitions) {
		if end := ends[engine.TopicPartition{Topic: fakeTopic, Partition: part}]; end != perPart {
			t.Fatalf("Status().Ends = %v, want %d for every partition", ends, perPart)
		}
	}

	a.set(0, 1)
	a.released(t)
	waitFor(t, "the series of tasks 2 and 3 deleted", func() bool { return matches(0, 1) })
	waitFor(t, "Status().Ends of partitions 0 and 1 only", func() bool { return len(p.Status().Ends) == 2 })

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := gauged(); len(got) != 0 {
		t.Fatalf("task series left after the pipeline stopped: %v", got)
	}
	if st := p.Status(); st.Tasks == nil || len(st.Tasks) != 0 || st.Ends != nil {
		t.Fatalf("stopped, Status() has tasks %v and ends %v; want none (but still split into tasks)", st.Tasks, st.Ends)
	}
}

// endsSource is a taskSource that knows where its partitions end.
type endsSource struct{ taskSource }

func (s *endsSource) Ends() engine.Positions {
	out := engine.Positions{}
	for tp := range s.next {
		out[tp] = s.perPart
	}
	return out
}
