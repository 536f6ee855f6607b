package components

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/kafkatest"
	"github.com/sluicehq/sluice/sinks/sinktest"
	"github.com/sluicehq/sluice/state"
)

// TestStatefulPipelineRestoresFromChangelog: a pipeline with an aggregate
// step reading the built-in broker gets the durable state backend; its
// state survives a restart, and a restart with an empty data directory
// (another machine) restores it from the changelog topic: the running
// counts go on from where they were.
func TestStatefulPipelineRestoresFromChangelog(t *testing.T) {
	brokers := kafkatest.Builtin(t, "words", 2)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func(n int) {
		t.Helper()
		for i := range n {
			r := &kgo.Record{Topic: "words", Partition: int32(i % 2), Key: fmt.Appendf(nil, "w%d", i%3), Value: []byte("{}")}
			if err := cl.ProduceSync(t.Context(), r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	mem := sinktest.NewMemory()
	table := toyTable(mem)
	spec, err := table.Parse("p.yaml", fmt.Appendf(nil, `version: 1
name: wc
source: {kafka: {brokers: [%s], topics: [words]}}
batch: {interval: 0}
transforms:
  - aggregate: {key: key, functions: {n: count}}
sink: {toy: {label: demo}}
`, brokers[0]), nil)
	if err != nil {
		t.Fatal(err)
	}
	run := func(dataDir string) {
		t.Helper()
		p, err := Build(t.Context(), spec, Options{Kinds: table, DataDir: dataDir, IdleExit: 300 * time.Millisecond,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := p.Run(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// counts returns the last count output per partition and key.
	counts := func() map[string]int {
		last := map[string]int{}
		for _, r := range mem.Records("wc") {
			var v struct {
				Key string `json:"key"`
				N   int    `json:"n"`
			}
			if err := json.Unmarshal(r.Value, &v); err != nil {
				t.Fatalf("output %s: %v", r.Value, err)
			}
			last[fmt.Sprint(r.Partition, "/", v.Key)] = v.N
		}
		return last
	}
	want := func(perPair int) {
		t.Helper()
		got := counts()
		if len(got) != 6 {
			t.Fatalf("counts of %d partition/key pairs, want 6: %v", len(got), got)
		}
		for id, n := range got {
			if n != perPair {
				t.Fatalf("%s: count %d, want %d (all: %v)", id, n, perPair, got)
			}
		}
	}

	data := t.TempDir()
	produce(60)
	run(data)
	want(10)
	if _, err := os.Stat(filepath.Join(state.Dir(data, "wc"), "0", "state.db")); err != nil {
		t.Fatalf("no local store for task 0: %v", err)
	}
	produce(60)
	run(data) // the same data directory: local stores caught up
	want(20)
	produce(60)
	run(t.TempDir()) // another machine: from the changelog alone
	want(30)
	if recs := kafkatest.ReadCommitted(t, brokers, state.ChangelogTopic("wc")); len(recs) == 0 {
		t.Fatal("the changelog topic holds no records")
	}
}
