package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkatest"
	"github.com/sluicehq/sluice/sinks/sinktest"
)

var quietLog = slog.New(slog.DiscardHandler)

func TestBalanceTasks(t *testing.T) {
	count := func(m map[string][]engine.Task) map[string]int {
		out := map[string]int{}
		for id, ts := range m {
			out[id] = len(ts)
		}
		return out
	}
	// Fresh: 12 tasks over 3 members, 4 each, every task once.
	got := balanceTasks([]string{"a", "b", "c"}, 12, nil)
	if c := count(got); c["a"] != 4 || c["b"] != 4 || c["c"] != 4 {
		t.Fatalf("fresh balance %v", got)
	}
	var all []engine.Task
	for _, ts := range got {
		all = append(all, ts...)
	}
	slices.Sort(all)
	if len(all) != 12 || slices.Compact(all)[11] != 11 {
		t.Fatalf("tasks not each given once: %v", all)
	}
	// Sticky: a fourth member takes one task from each; nobody else moves.
	owner := map[engine.Task]string{}
	for id, ts := range got {
		for _, task := range ts {
			owner[task] = id
		}
	}
	next := balanceTasks([]string{"a", "b", "c", "d"}, 12, owner)
	moved := 0
	for id, ts := range next {
		for _, task := range ts {
			if owner[task] != id {
				moved++
			}
		}
	}
	if c := count(next); c["a"] != 3 || c["b"] != 3 || c["c"] != 3 || c["d"] != 3 || moved != 3 {
		t.Fatalf("with a fourth member %v (%d moved, want 3)", next, moved)
	}
	// A member leaves: only its tasks move.
	next = balanceTasks([]string{"a", "c"}, 12, owner)
	for _, id := range []string{"a", "c"} {
		for _, task := range got[id] {
			if !slices.Contains(next[id], task) {
				t.Fatalf("%s lost task %d when b left: %v", id, task, next)
			}
		}
	}
	if c := count(next); c["a"] != 6 || c["c"] != 6 {
		t.Fatalf("after b left %v", next)
	}
}

// taskProcess is one process of a pipeline split into tasks: its group
// membership and its pipeline, reading through Direct into a shared
// in-memory destination.
type taskProcess struct {
	group  *Group
	cancel context.CancelFunc
	done   chan error
}

func startTaskProcess(t *testing.T, name string, brokers []string, mem *sinktest.Memory) *taskProcess {
	t.Helper()
	quietLog := quietLog.With("process", name)
	conn := Connection{Brokers: brokers}
	g, err := JoinGroup(GroupConfig{Conn: conn, Topics: []string{"events", "audit"}, Pipeline: "tasks", Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewDirect(DirectConfig{Conn: conn, Topics: []string{"events", "audit"}, Start: "earliest",
		Tasks: g, Pipeline: "tasks", Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	p, err := engine.New(engine.Config{Name: "tasks", Delivery: engine.ExactlyOnce, Tasks: g,
		MaxRecordsPerPartition: 20, Source: src, Sink: mem.NewSink(), Logger: quietLog, MinBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tp := &taskProcess{group: g, cancel: cancel, done: make(chan error, 1)}
	go func() { tp.done <- p.Run(ctx) }()
	return tp
}

// stop stops the pipeline, then leaves the group (as sluice run does).
func (p *taskProcess) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	if err := <-p.done; err != nil {
		t.Error(err)
	}
	p.group.Close()
}

// awaitTasks waits until p holds some tasks.
func (p *taskProcess) awaitTasks(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(tasksOf(p.group.Owned())) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s got no tasks", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func produceTopics(t *testing.T, brokers []string, from, to int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Topic: "events", Value: fmt.Appendf(nil, "e%d", i)},
			&kgo.Record{Topic: "audit", Value: fmt.Appendf(nil, "a%d", i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func awaitCommitted(t *testing.T, mem *sinktest.Memory, n int) map[string]int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		seen := map[string]int{}
		for _, r := range mem.Records("tasks") {
			seen[string(r.Value)]++
		}
		if len(seen) >= n || time.Now().After(deadline) {
			return seen
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Three processes of one pipeline over two co-partitioned topics of six
// partitions share the work through the group: each gets tasks, each task
// reads partition p of both topics, and when processes join and leave the
// tasks move with their positions. Every record is committed exactly once.
func TestTasksSplitAcrossProcesses(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, "events", "audit"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	mem := sinktest.NewMemory()

	a := startTaskProcess(t, "a", brokers, mem)
	produceTopics(t, brokers, 0, 300)
	awaitCommitted(t, mem, 600)
	b := startTaskProcess(t, "b", brokers, mem)
	cc := startTaskProcess(t, "c", brokers, mem)
	b.awaitTasks(t, "the second process")
	cc.awaitTasks(t, "the third process")
	produceTopics(t, brokers, 300, 600)
	awaitCommitted(t, mem, 1200)

	// Co-partitioned: each process holds partition p of both topics.
	var mu sync.Mutex
	holders := map[int32]int{}
	for _, p := range []*taskProcess{a, b, cc} {
		owned := p.group.Owned()
		if !slices.Equal(owned["events"], owned["audit"]) {
			t.Fatalf("not co-partitioned: %v", owned)
		}
		mu.Lock()
		for _, part := range owned["events"] {
			holders[part]++
		}
		mu.Unlock()
	}
	if len(holders) != 6 {
		t.Fatalf("tasks held: %v; want each of 6 once", holders)
	}

	b.stop(t)
	produceTopics(t, brokers, 600, 900)
	seen := awaitCommitted(t, mem, 1800)
	a.stop(t)
	cc.stop(t)
	for i := range 900 {
		for _, v := range []string{fmt.Sprintf("e%d", i), fmt.Sprintf("a%d", i)} {
			if seen[v] != 1 {
				t.Fatalf("%s committed %d times", v, seen[v])
			}
		}
	}
	if len(seen) != 1800 {
		t.Fatalf("%d distinct values committed, want 1800", len(seen))
	}
}

// TestDirectEndsAndLagSeriesFollowTasks: Ends says where the partitions of
// the tasks read end, and reopened with fewer tasks, Direct deletes the lag
// series of the partitions it reads no more (another process reports
// them).
func TestDirectEndsAndLagSeriesFollowTasks(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events", "audit"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	produceTopics(t, brokers, 0, 40) // 10 per partition of each topic
	conn := Connection{Brokers: brokers}
	g, err := JoinGroup(GroupConfig{Conn: conn, Topics: []string{"events"}, Pipeline: "ends", Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	m := NewMetrics(nil)
	d, err := NewDirect(DirectConfig{Conn: conn, Topics: []string{"events"}, Start: "earliest", Tasks: g,
		Pipeline: "ends", Logger: quietLog, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := d.OpenTasks(ctx, []engine.Task{0, 1, 2, 3}, nil); err != nil {
		t.Fatal(err)
	}
	ends := d.Ends()
	for p := range int32(4) {
		if end := ends[engine.TopicPartition{Topic: "events", Partition: p}]; end != 10 {
			t.Fatalf("Ends() = %v, want 10 for each partition of events", ends)
		}
	}
	_, until, err := d.Next(ctx, engine.Limits{MaxRecordsPerPartition: 4})
	if err != nil {
		t.Fatal(err)
	}
	d.Committed(ctx, until) // the echo to the group may fail: not a member yet
	if n := testutil.CollectAndCount(m.Lag); n != 4 {
		t.Fatalf("%d lag series, want 4", n)
	}
	if lag := testutil.ToFloat64(m.Lag.WithLabelValues("ends", "events", "2")); lag != 6 {
		t.Fatalf("lag of events/2 = %v, want 6", lag)
	}
	d.Close()

	if err := d.OpenTasks(ctx, []engine.Task{2}, until); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if ends := d.Ends(); len(ends) != 1 || ends[engine.TopicPartition{Topic: "events", Partition: 2}] != 10 {
		t.Fatalf("Ends() = %v with task 2 only", ends)
	}
	if n := testutil.CollectAndCount(m.Lag); n != 1 {
		t.Fatalf("%d lag series after tasks 0, 1 and 3 moved away, want 1", n)
	}
}

// builtinBroker starts the built-in broker in-process with topic "events" of
// partitions partitions.
func builtinBroker(t *testing.T, partitions int32) []string {
	return kafkatest.Builtin(t, "events", partitions)
}

// awaitTasks waits until g holds want tasks, failing after within.
func awaitGroupTasks(t *testing.T, g *Group, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for len(tasksOf(g.Owned())) != want {
		if time.Now().After(deadline) {
			t.Fatalf("holds tasks %v after %s; want %d", tasksOf(g.Owned()), within, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A process keeps its identity in the group in its data directory: killed
// and restarted, it takes its tasks back at once, not after its session
// (30s here) times out; stopped, it leaves, and the others take its tasks
// at once; and two live processes cannot share the identity.
func TestGroupStaticMembership(t *testing.T) {
	brokers := builtinBroker(t, 4)
	join := func(dir string) (*Group, error) {
		return JoinGroup(GroupConfig{Conn: Connection{Brokers: brokers}, Topics: []string{"events"}, Pipeline: "static",
			SessionTimeout: 30 * time.Second, MemberDir: dir, Logger: quietLog})
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	a, err := join(dirA)
	if err != nil {
		t.Fatal(err)
	}
	awaitGroupTasks(t, a, 4, 10*time.Second)
	if _, err := join(dirA); err == nil || !strings.Contains(err.Error(), "uses this data directory") {
		t.Fatalf("a second member on the same identity: %v", err)
	}

	// Killed: its client stops, nobody leaves, the lock goes with it.
	a.cl.Close()
	a.idFile.Close()
	a, err = join(dirA)
	if err != nil {
		t.Fatal(err)
	}
	awaitGroupTasks(t, a, 4, 10*time.Second)

	// a lets go of revoked tasks as the engine would.
	stop := make(chan struct{})
	defer close(stop)
	for _, g := range []*Group{a} {
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-g.Changed():
					g.Assigned(context.Background())
				}
			}
		}()
	}
	b, err := join(dirB)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	awaitGroupTasks(t, b, 2, 20*time.Second)
	a.Close()
	awaitGroupTasks(t, b, 4, 10*time.Second)
}
