package kafka

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkatest"
	srckafka "github.com/sluicehq/sluice/sources/kafka"
)

// Tests of the sink split into tasks: the tasks' positions are the
// offsets of the source's task group, committed in the round's
// transaction under the group membership the tasks were opened in.

const taskPartitions = 4

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// taskBroker starts the built-in broker or kfake with topic "events" of
// taskPartitions partitions, the source's topic.
func taskBroker(t *testing.T, start func(testing.TB) []string) []string {
	t.Helper()
	brokers := start(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), taskPartitions, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	return brokers
}

// joinTasks joins the task group "g" with the identity kept in dir and
// waits for its first assignment.
func joinTasks(t *testing.T, brokers []string, dir string) (*srckafka.Group, []engine.Task) {
	t.Helper()
	g, err := srckafka.JoinGroup(srckafka.GroupConfig{Conn: srckafka.Connection{Brokers: brokers}, Group: "g",
		Topics: []string{"events"}, MemberDir: dir, Pipeline: "p", SessionTimeout: 6 * time.Second, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tasks, err := g.Assigned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return g, tasks
}

func newTaskSink(t *testing.T, brokers []string, g TaskGroup) *Sink {
	t.Helper()
	s, err := New(Config{Brokers: brokers, Topic: "out", Tasks: g, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// round writes one record per task, valued prefix-TASK, and returns each
// task's checkpoint: epoch, and position n on its partition of events.
func writeRound(t *testing.T, s *Sink, round uint64, tasks []engine.Task, epoch func(engine.Task) uint64, n int64, prefix string) map[engine.Task]engine.Checkpoint {
	t.Helper()
	var recs []engine.Record
	cps := map[engine.Task]engine.Checkpoint{}
	for _, task := range tasks {
		recs = append(recs, engine.Record{Topic: "events", Partition: int32(task), Value: []byte(prefix + "-" + task.String())})
		cps[task] = engine.Checkpoint{Epoch: epoch(task), At: engine.Positions{{Topic: "events", Partition: int32(task)}: n}}
	}
	if err := s.Write(context.Background(), round, recs); err != nil {
		t.Fatal(err)
	}
	return cps
}

func checkOpened(t *testing.T, got map[engine.Task]engine.Checkpoint, want map[engine.Task]engine.Checkpoint) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("OpenTasks = %v; want %v", got, want)
	}
	for task, w := range want {
		if g, ok := got[task]; !ok || g.Epoch != w.Epoch || !g.At.Equal(w.At) {
			t.Fatalf("OpenTasks = %v; want %v", got, want)
		}
	}
}

// onBrokers runs test against the built-in broker and kfake.
func onBrokers(t *testing.T, test func(t *testing.T, brokers []string)) {
	for name, start := range map[string]func(testing.TB) []string{"builtin": builtinBroker, "kfake": kfakeCluster} {
		t.Run(name, func(t *testing.T) { test(t, taskBroker(t, start)) })
	}
}

func allTasks() []engine.Task {
	var ts []engine.Task
	for p := range engine.Task(taskPartitions) {
		ts = append(ts, p)
	}
	return ts
}

// Tasks reopen with the epochs and positions their rounds committed, in a
// new sink of the same process; a round already stored is a no-op; the
// source's echo of positions is off.
func TestTasksReopen(t *testing.T) { onBrokers(t, testTasksReopen) }

func testTasksReopen(t *testing.T, brokers []string) {
	ctx := context.Background()
	g, tasks := joinTasks(t, brokers, t.TempDir())
	if !slices.Equal(tasks, allTasks()) {
		t.Fatalf("assigned %v", tasks)
	}
	s := newTaskSink(t, brokers, g)
	got, err := s.OpenTasks(ctx, "p", tasks)
	if err != nil || len(got) != 0 {
		t.Fatalf("OpenTasks = %v, %v; want nothing committed", got, err)
	}
	one := func(engine.Task) uint64 { return 1 }
	cps1 := writeRound(t, s, 1, tasks, one, 10, "a")
	if err := s.CommitTasks(ctx, 1, cps1); err != nil {
		t.Fatal(err)
	}
	cps2 := writeRound(t, s, 2, tasks, func(engine.Task) uint64 { return 2 }, 20, "b")
	if err := s.CommitTasks(ctx, 2, cps2); err != nil {
		t.Fatal(err)
	}
	// The echo would overwrite the offsets without their epochs.
	if err := g.Commit(ctx, engine.Positions{{Topic: "events", Partition: 0}: 99}); err != nil {
		t.Fatal(err)
	}

	r := newTaskSink(t, brokers, g)
	got, err = r.OpenTasks(ctx, "p", tasks)
	if err != nil {
		t.Fatal(err)
	}
	checkOpened(t, got, cps2)
	if err := r.CommitTasks(ctx, 1, cps2); err != nil { // a retry after a lost acknowledgement
		t.Fatalf("re-commit of stored checkpoints = %v; want a no-op", err)
	}
	if err := r.CommitTasks(ctx, 1, cps1); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("commit of an older epoch = %v; want ErrFenced", err)
	}
	// Only some tasks reopened: the others are not returned.
	got, err = r.OpenTasks(ctx, "p", []engine.Task{1, 3})
	if err != nil {
		t.Fatal(err)
	}
	checkOpened(t, got, map[engine.Task]engine.Checkpoint{1: cps2[1], 3: cps2[3]})
	want := []string{"a-0", "a-1", "a-2", "a-3", "b-0", "b-1", "b-2", "b-3"}
	if vs := sortedValues(t, brokers); !slices.Equal(vs, want) {
		t.Fatalf("output %v; want %v", vs, want)
	}
}

func sortedValues(t *testing.T, brokers []string) []string {
	t.Helper()
	vs := kafkatest.Values(kafkatest.ReadCommitted(t, brokers, "out"))
	slices.Sort(vs)
	return vs
}

// A round committed under a generation the group has left is fenced: the
// broker refuses its offsets, the transaction is aborted, and nothing of
// it becomes visible to a read_committed consumer.
func TestTasksStaleGenerationFenced(t *testing.T) { onBrokers(t, testTasksStaleGenerationFenced) }

func testTasksStaleGenerationFenced(t *testing.T, brokers []string) {
	ctx := context.Background()
	a, tasks := joinTasks(t, brokers, t.TempDir())
	s := newTaskSink(t, brokers, a)
	if _, err := s.OpenTasks(ctx, "p", tasks); err != nil {
		t.Fatal(err)
	}
	_, opened, _ := a.Member()
	cps := writeRound(t, s, 1, tasks, func(engine.Task) uint64 { return 1 }, 5, "zombie")

	// A second process joins: a new generation, which moves tasks to it.
	b, err := srckafka.JoinGroup(srckafka.GroupConfig{Conn: srckafka.Connection{Brokers: brokers}, Group: "g",
		Topics: []string{"events"}, MemberDir: t.TempDir(), Pipeline: "p", SessionTimeout: 6 * time.Second, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, gen, _ := a.Member(); gen != opened {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the group did not rebalance within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	err = s.CommitTasks(ctx, 1, cps)
	if !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("commit under a stale generation = %v; want ErrFenced", err)
	}
	t.Log(err)
	// Let go of the revoked tasks, so the second process gets them.
	if _, err := a.Assigned(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Assigned(ctx); err != nil {
		t.Fatal(err)
	}
	if vs := sortedValues(t, brokers); len(vs) != 0 {
		t.Fatalf("the fenced round's output is visible: %v", vs)
	}
	// Reopened in the new generation, the process commits its tasks.
	mine, err := a.Assigned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.OpenTasks(ctx, "p", mine)
	if err != nil || len(got) != 0 {
		t.Fatalf("OpenTasks = %v, %v; want nothing committed", got, err)
	}
	cps = writeRound(t, s, 1, mine, func(engine.Task) uint64 { return 1 }, 5, "a")
	if err := s.CommitTasks(ctx, 1, cps); err != nil {
		t.Fatal(err)
	}
	if vs := sortedValues(t, brokers); len(vs) != len(mine) {
		t.Fatalf("output %v; want one value per task of %v", vs, mine)
	}
}

// A process restarted with the same identity (its member file) fences its
// predecessor at once: the transaction it left open, offsets included, is
// aborted when the new one initialises, not at the transaction timeout.
func TestTasksRestartAbortsPredecessor(t *testing.T) { onBrokers(t, testTasksRestartAbortsPredecessor) }

func testTasksRestartAbortsPredecessor(t *testing.T, brokers []string) {
	ctx := context.Background()
	dir := t.TempDir()
	g, tasks := joinTasks(t, brokers, dir)
	s := newTaskSink(t, brokers, g)
	if _, err := s.OpenTasks(ctx, "p", tasks); err != nil {
		t.Fatal(err)
	}
	cps := writeRound(t, s, 1, tasks, func(engine.Task) uint64 { return 1 }, 7, "dead")
	// The round gets as far as its offsets, then the process dies.
	if err := s.cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.commitOffsets(ctx, cps); err != nil {
		t.Fatal(err)
	}
	s.cl.Close()
	s.cl = nil
	g.Close()

	start := time.Now()
	g2, tasks := joinTasks(t, brokers, dir)
	if g2.Identity() != g.Identity() {
		t.Fatalf("identity %q after the restart; want %q", g2.Identity(), g.Identity())
	}
	r := newTaskSink(t, brokers, g2)
	got, err := r.OpenTasks(ctx, "p", tasks)
	if err != nil || len(got) != 0 {
		t.Fatalf("OpenTasks = %v, %v; want nothing committed (the predecessor's offsets aborted)", got, err)
	}
	if waited := time.Since(start); waited > transactionTimeout/2 {
		t.Fatalf("the restart waited %s for its predecessor's transaction", waited)
	}
	cps = writeRound(t, r, 1, tasks, func(engine.Task) uint64 { return 1 }, 7, "new")
	if err := r.CommitTasks(ctx, 1, cps); err != nil {
		t.Fatal(err)
	}
	// The new round's records follow the dead one's in the log: visible
	// only because the dead transaction is decided.
	want := []string{"new-0", "new-1", "new-2", "new-3"}
	if vs := sortedValues(t, brokers); !slices.Equal(vs, want) {
		t.Fatalf("output %v; want %v", vs, want)
	}
}

// A pipeline that ran as one chain moves to tasks: each task starts from
// the chain's checkpoint (its epoch, its positions of the task), and once
// committed reopens from the group's offsets.
func TestTasksFromSingleChain(t *testing.T) { onBrokers(t, testTasksFromSingleChain) }

func testTasksFromSingleChain(t *testing.T, brokers []string) {
	ctx := context.Background()
	chain, err := New(Config{Brokers: brokers, Topic: "out", Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	if _, _, err := chain.Open(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	at := engine.Positions{}
	for p := range int32(taskPartitions) {
		at[engine.TopicPartition{Topic: "events", Partition: p}] = int64(100 + p)
	}
	for e := uint64(1); e <= 3; e++ {
		if err := chain.Write(ctx, e, []engine.Record{{Value: []byte("chain-" + strconv.Itoa(int(e)))}}); err != nil {
			t.Fatal(err)
		}
		if err := chain.Commit(ctx, e, at); err != nil {
			t.Fatal(err)
		}
	}

	g, tasks := joinTasks(t, brokers, t.TempDir())
	s := newTaskSink(t, brokers, g)
	got, err := s.OpenTasks(ctx, "p", tasks)
	if err != nil {
		t.Fatal(err)
	}
	want := map[engine.Task]engine.Checkpoint{}
	for _, task := range tasks {
		want[task] = engine.Checkpoint{Epoch: 3, At: at.OfTask(task)}
	}
	checkOpened(t, got, want)
	// Opening the tasks fenced the chain's producer.
	if err := chain.Commit(ctx, 4, at); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("chain commit after the split = %v; want ErrFenced", err)
	}
	cps := writeRound(t, s, 1, tasks, func(engine.Task) uint64 { return 4 }, 200, "task")
	if err := s.CommitTasks(ctx, 1, cps); err != nil {
		t.Fatal(err)
	}
	r := newTaskSink(t, brokers, g)
	got, err = r.OpenTasks(ctx, "p", tasks)
	if err != nil {
		t.Fatal(err)
	}
	checkOpened(t, got, cps)
	if vs := sortedValues(t, brokers); len(vs) != 3+taskPartitions {
		t.Fatalf("output %v; want the chain's 3 values and one per task", vs)
	}
}

// otherProcess is the task group of a with another identity: a second
// process's sink, as far as transactional ids go.
type otherProcess struct{ *srckafka.Group }

func (otherProcess) Identity() string { return "other" }

// A task's first offsets, sent in a transaction not yet decided, hold up
// another process's OpenTasks (require_stable) until the transaction
// ends, even though the group has no offset of the task committed yet.
func TestTasksOpenWaitsForPendingOffsets(t *testing.T) { onBrokers(t, testOpenWaitsForPendingOffsets) }

func testOpenWaitsForPendingOffsets(t *testing.T, brokers []string) {
	ctx := context.Background()
	g, tasks := joinTasks(t, brokers, t.TempDir())
	s := newTaskSink(t, brokers, g)
	if _, err := s.OpenTasks(ctx, "p", tasks); err != nil {
		t.Fatal(err)
	}
	cps := writeRound(t, s, 1, tasks, func(engine.Task) uint64 { return 1 }, 3, "a")
	if err := s.cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.commitOffsets(ctx, cps); err != nil {
		t.Fatal(err)
	}
	other := newTaskSink(t, brokers, otherProcess{g})
	type opened struct {
		cps map[engine.Task]engine.Checkpoint
		err error
	}
	done := make(chan opened, 1)
	go func() {
		cps, err := other.OpenTasks(ctx, "p", tasks)
		done <- opened{cps, err}
	}()
	select {
	case o := <-done:
		t.Fatalf("OpenTasks returned %v, %v while the offsets were undecided", o.cps, o.err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := s.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-done:
		if o.err != nil {
			t.Fatal(o.err)
		}
		checkOpened(t, o.cps, cps)
	case <-time.After(30 * time.Second):
		t.Fatal("OpenTasks still waiting 30s after the transaction committed")
	}
}
