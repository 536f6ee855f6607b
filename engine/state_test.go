package engine_test

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/state"
)

// counter counts the records of each task in state and fails now and then,
// so the engine must discard and redo state changes with the batches.
type counter struct{ fault *chance }

func (c counter) Process(ctx context.Context, in []engine.Record) ([]engine.Record, []engine.Rejected, error) {
	if err := c.fault.fail(); err != nil {
		return nil, nil, err
	}
	v := state.ViewFrom(ctx)
	for _, r := range in {
		task := engine.TaskOf(engine.TopicPartition{Topic: r.Topic, Partition: r.Partition})
		old, _, err := v.Get(task, "count", []byte("n"))
		if err != nil {
			return nil, nil, err
		}
		var n uint64
		if len(old) == 8 {
			n = binary.BigEndian.Uint64(old)
		}
		if err := v.Put(task, "count", []byte("n"), binary.BigEndian.AppendUint64(nil, n+1)); err != nil {
			return nil, nil, err
		}
	}
	return in, nil, nil
}

func (counter) Close() error { return nil }

// TestStateFollowsCommits counts records in state while reads, the
// transform, writes and commits fail, and commits take effect with their
// acknowledgement lost: the state committed with the last epoch counts
// every record once.
func TestStateFollowsCommits(t *testing.T) {
	const prob = 0.08
	src := newFakeSource(t, 3, 400)
	src.nextFault = newChance(21, prob)
	sink := newOrderSink(t)
	sink.writeFault, sink.commitFault, sink.lostAck = newChance(22, prob), newChance(23, prob), newChance(24, prob)
	tr := counter{fault: newChance(25, prob)}
	mem := state.NewMemory()
	p, err := engine.New(engine.Config{
		Name: "count", Delivery: engine.ExactlyOnce, MaxRecordsPerPartition: 7,
		IdleExit: 20 * time.Millisecond, MinBackoff: time.Millisecond, Logger: quiet,
		Source: src, Transforms: []engine.Transform{tr}, Sink: sink, State: mem,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := runFor(t, context.Background(), p); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*chance{"Next": src.nextFault, "transform": tr.fault,
		"Write": sink.writeFault, "Commit": sink.commitFault, "lost acknowledgement": sink.lostAck} {
		if c.injected.Load() == 0 {
			t.Errorf("no %s failure was injected; the test proves less than it claims", name)
		}
	}
	sink.checkExactlyOnce(t, src)
	for task := range engine.Task(3) {
		got := mem.Snapshot(task)["count"]["n"]
		if len(got) != 8 || binary.BigEndian.Uint64([]byte(got)) != 400 {
			t.Errorf("task %d: state counts %x, want 400 records", task, got)
		}
	}
}

func TestStateNeedsExactlyOnce(t *testing.T) {
	_, err := engine.New(engine.Config{
		Name: "count", Delivery: engine.AtLeastOnce, Source: newFakeSource(t, 1, 1), Sink: newOrderSink(t),
		Checkpoints: memCheckpoints{d: &durable{}}, State: state.NewMemory(),
	})
	if err == nil {
		t.Fatal("a pipeline keeping state was accepted with delivery at-least-once")
	}
}

// ticking emits one record per tick, up to max, counting them in state.
type ticking struct{ max uint64 }

func (ticking) Tick() time.Duration { return time.Millisecond }

func (k ticking) Process(ctx context.Context, in []engine.Record) ([]engine.Record, []engine.Rejected, error) {
	v := state.ViewFrom(ctx)
	old, _, err := v.Get(0, "tick", []byte("n"))
	if err != nil {
		return nil, nil, err
	}
	var n uint64
	if len(old) == 8 {
		n = binary.BigEndian.Uint64(old)
	}
	if len(in) > 0 || n == k.max {
		return in, nil, nil
	}
	if err := v.Put(0, "tick", []byte("n"), binary.BigEndian.AppendUint64(nil, n+1)); err != nil {
		return nil, nil, err
	}
	// A partition of its own per emission: the test sink expects each
	// partition's offsets to follow its committed positions.
	return []engine.Record{{Topic: "tick", Partition: int32(n)}}, nil, nil
}

func (ticking) Close() error { return nil }

// TestTickerRunsWithoutInput: a source with nothing to read still lets a
// Ticker emit, and each emission commits as a batch of its own.
func TestTickerRunsWithoutInput(t *testing.T) {
	src := newFakeSource(t, 1, 0)
	sink := newOrderSink(t)
	mem := state.NewMemory()
	p, err := engine.New(engine.Config{
		Name: "tick", Delivery: engine.ExactlyOnce, IdleExit: 50 * time.Millisecond, Logger: quiet,
		Source: backlogSource{src}, Transforms: []engine.Transform{ticking{max: 3}}, Sink: sink, State: mem,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := runFor(t, context.Background(), p); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.visible) != 3 {
		t.Fatalf("%d records committed, want the 3 the ticker emitted", len(sink.visible))
	}
	if got := mem.Snapshot(0)["tick"]["n"]; binary.BigEndian.Uint64([]byte(got)) != 3 {
		t.Fatalf("state says %x ticks emitted, want 3", got)
	}
}

// TestDurableStateFollowsCommits is TestStateFollowsCommits with the
// durable backend (local stores only: the source is not Kafka): after the
// faults, each task's store holds every record counted once.
func TestDurableStateFollowsCommits(t *testing.T) {
	const prob = 0.08
	src := newFakeSource(t, 3, 400)
	src.nextFault = newChance(31, prob)
	sink := newOrderSink(t)
	sink.writeFault, sink.commitFault, sink.lostAck = newChance(32, prob), newChance(33, prob), newChance(34, prob)
	tr := counter{fault: newChance(35, prob)}
	data := t.TempDir()
	st, err := state.Open(context.Background(), state.Options{DataDir: data, Pipeline: "count", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	p, err := engine.New(engine.Config{
		Name: "count", Delivery: engine.ExactlyOnce, MaxRecordsPerPartition: 7,
		IdleExit: 20 * time.Millisecond, MinBackoff: time.Millisecond, Logger: quiet,
		Source: src, Transforms: []engine.Transform{tr}, Sink: sink, State: st,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := runFor(t, context.Background(), p); err != nil { // closes st
		t.Fatal(err)
	}
	if sink.lostAck.injected.Load() == 0 || sink.commitFault.injected.Load() == 0 {
		t.Error("no lost acknowledgement or commit failure was injected; the test proves less than it claims")
	}
	sink.checkExactlyOnce(t, src)
	for task := range engine.Task(3) {
		var got []byte
		if _, err := state.Inspect(context.Background(), state.InspectOptions{DataDir: data, Pipeline: "count", Task: task},
			func(ns string, key, value []byte) error {
				if ns == "count" && string(key) == "n" {
					got = append([]byte(nil), value...)
				}
				return nil
			}); err != nil {
			t.Fatal(err)
		}
		if len(got) != 8 || binary.BigEndian.Uint64(got) != 400 {
			t.Errorf("task %d: state counts %x, want 400 records", task, got)
		}
	}
}

// restoreSpy records the tasks each Restore was given.
type restoreSpy struct {
	engine.StateBackend
	mu    sync.Mutex
	tasks [][]engine.Task
}

func (s *restoreSpy) Restore(ctx context.Context, tasks []engine.Task, committed func(engine.Task) uint64) error {
	s.mu.Lock()
	s.tasks = append(s.tasks, tasks)
	s.mu.Unlock()
	return s.StateBackend.Restore(ctx, tasks, committed)
}

func (s *restoreSpy) calls() [][]engine.Task {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tasks)
}

// TestStateRestoreOfNoTasks: a process whose group gave it no task (a
// second process joining, the first still holding everything) restores
// none. A nil task list means "one epoch chain, every task" to the state
// backend, which then checked every task of the changelog against epoch 0
// and stopped the process with "the state is ahead of the sink".
func TestStateRestoreOfNoTasks(t *testing.T) {
	g := &taskGroup{}
	idle := g.member("idle") // no tasks
	spy := &restoreSpy{StateBackend: state.NewMemory()}
	p, err := engine.New(engine.Config{
		Name: "tasks", Delivery: engine.ExactlyOnce, Tasks: idle, State: spy,
		Source: &taskSource{partitions: 2, perPart: 10}, Sink: &taskSink{store: newTaskStore()},
		MinBackoff: time.Millisecond, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "a restore", func() bool { return len(spy.calls()) > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, tasks := range spy.calls() {
		if tasks == nil || len(tasks) != 0 {
			t.Fatalf("restore %d was given tasks %#v, want an empty, non-nil list", i, tasks)
		}
	}
}
