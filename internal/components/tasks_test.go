package components

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkatest"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/sinks/sinktest"
)

// A direct-mode Kafka pipeline into a sink that keeps a checkpoint per task
// is split into tasks: two pipelines built from one file share the
// partitions through the group and commit every record once. The same
// pipeline with at-least-once delivery is not split.
func TestDirectPipelineSplitsIntoTasks(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mem := sinktest.NewMemory()
	table := Builtin
	table.Sinks = append(slices.Clone(Builtin.Sinks),
		NewKind("mem", pipelines.Caps{Transactional: true, Tasks: true},
			func(ctx context.Context, c *toyConfig, env *Env) (engine.Sink, error) { return mem.NewSink(), nil }))
	yaml := fmt.Sprintf(`version: 1
name: split
source: {kafka: {brokers: [%s], topics: [in], mode: direct}}
batch: {interval: 0}
sink: {mem: {label: x}}
`, c.ListenAddrs()[0])
	spec, err := table.Parse("p.yaml", []byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := startSplit(t, ctx, spec, &table)
	const n = 2000
	produceValues(t, ctx, c.ListenAddrs()[0], n)
	deadline := time.Now().Add(time.Minute)
	for len(mem.Records("split")) < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	for _, ch := range done {
		if err := <-ch; err != nil {
			t.Error(err)
		}
	}
	seen := map[string]int{}
	for _, r := range mem.Records("split") {
		seen[string(r.Value)]++
	}
	for i := range n {
		if v := fmt.Sprintf("v%d", i); seen[v] != 1 {
			t.Fatalf("%s committed %d times", v, seen[v])
		}
	}

	// Not exactly-once: one chain, as before tasks.
	spec.Delivery, spec.Name = string(engine.AtLeastOnce), "split-alo"
	p, err := Build(context.Background(), spec, Options{Kinds: &table, DataDir: t.TempDir(), Logger: log,
		IdleExit: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if epoch, _ := mem.Committed("split-alo"); epoch == 0 || p.Status().Tasks != nil || len(mem.Records("split-alo")) != n {
		t.Fatalf("at-least-once: epoch %d, tasks %v, %d records; want one chain with all %d", epoch, p.Status().Tasks, len(mem.Records("split-alo")), n)
	}
}

// A kafka sink splits into tasks only on the source's cluster, where the
// source's group holds the tasks' positions: two pipelines built from one
// file share the partitions and the output holds every record once. On
// another cluster the pipeline runs as one chain.
func TestKafkaSinkSplitsOnTheSourceCluster(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	table := Builtin
	addr := c.ListenAddrs()[0]
	parse := func(sinkBrokers string) *pipelines.Spec {
		spec, err := table.Parse("p.yaml", fmt.Appendf(nil, `version: 1
name: split
source: {kafka: {brokers: [%s], topics: [in], mode: direct}}
batch: {interval: 0}
sink: {kafka: {brokers: [%s], topic: out}}
`, addr, sinkBrokers), nil)
		if err != nil {
			t.Fatal(err)
		}
		return spec
	}
	if env := (&Env{Options: Options{Kinds: &table}, Spec: parse("127.0.0.1:1")}); env.SplitIntoTasks() {
		t.Fatal("a kafka sink on another cluster splits into tasks")
	}
	spec := parse(addr)
	if env := (&Env{Options: Options{Kinds: &table}, Spec: spec}); !env.SplitIntoTasks() {
		t.Fatal("a kafka sink on the source's cluster does not split into tasks")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := startSplit(t, ctx, spec, &table)
	const n = 2000
	produceValues(t, ctx, addr, n)
	var out []string
	deadline := time.Now().Add(time.Minute)
	for len(out) < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		out = kafkatest.Values(kafkatest.ReadCommitted(t, []string{addr}, "out"))
	}
	cancel()
	for _, ch := range done {
		if err := <-ch; err != nil {
			t.Error(err)
		}
	}
	seen := map[string]int{}
	for _, v := range out {
		seen[v]++
	}
	for i := range n {
		if v := fmt.Sprintf("v%d", i); seen[v] != 1 {
			t.Fatalf("%s is in the output %d times", v, seen[v])
		}
	}
}

// startSplit builds and runs two pipelines from spec and waits until each
// runs two of the topic's four tasks: the work is split before anything is
// produced. It returns the channels their Run results arrive on.
func startSplit(t *testing.T, ctx context.Context, spec *pipelines.Spec, table *Table) []chan error {
	t.Helper()
	var done []chan error
	var pipes []*engine.Pipeline
	for range 2 {
		p, err := Build(ctx, spec, Options{Kinds: table, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan error, 1)
		go func() { ch <- p.Run(ctx) }()
		done, pipes = append(done, ch), append(pipes, p)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(pipes[0].Status().Tasks) != 2 || len(pipes[1].Status().Tasks) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("tasks not split: %v and %v", pipes[0].Status().Tasks, pipes[1].Status().Tasks)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return done
}

// produceValues writes v0..v(n-1) round-robin into topic in at addr.
func produceValues(t *testing.T, ctx context.Context, addr string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("in"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range n {
		cl.Produce(ctx, &kgo.Record{Value: fmt.Appendf(nil, "v%d", i)}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}
