package aggregate_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/components"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/sinks/sinktest"
)

// TestPipelineRunningCount runs a pipeline file with an aggregate step
// through components.Build and the engine: the wiring gives it a state
// backend, and the last update of each key on each partition holds the
// exact count of that key's records there.
func TestPipelineRunningCount(t *testing.T) {
	mem := sinktest.NewMemory()
	table := components.Builtin
	table.Sinks = append(slices.Clone(table.Sinks), components.NewKind("mem", pipelines.Caps{Transactional: true},
		func(ctx context.Context, c *memConfig, env *components.Env) (engine.Sink, error) {
			return mem.NewSink(), nil
		}))
	spec, err := table.Parse("p.yaml", []byte(`version: 1
name: count
source: {generate: {count: 1000, partitions: 2, keys: 5}}
batch: {interval: 0, max-records-per-partition: 7}
transforms:
  - aggregate: {key: key, functions: {n: count}}
sink: {mem: {}}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := components.Build(t.Context(), spec, components.Options{Kinds: &table, DataDir: t.TempDir(),
		IdleExit: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	last := map[string]int{}
	for _, r := range mem.Records("count") {
		var v struct {
			Key string `json:"key"`
			N   int    `json:"n"`
		}
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatalf("output %s: %v", r.Value, err)
		}
		id := string(rune('0'+r.Partition)) + "/" + v.Key
		if v.N <= last[id] {
			t.Fatalf("%s: count went from %d to %d", id, last[id], v.N)
		}
		last[id] = v.N
	}
	// Sequence s goes to partition s%2 with key k-(s%5): each of the 10
	// pairs holds 100 of the 1000 records.
	if len(last) != 10 {
		t.Fatalf("counts of %d partition/key pairs, want 10: %v", len(last), last)
	}
	for id, n := range last {
		if n != 100 {
			t.Errorf("%s: final count %d, want 100", id, n)
		}
	}
}

type memConfig struct{}

func (*memConfig) Validate(*pipelines.Check) {}

// TestPipelineProcessingTimeWindowsClose runs processing-time windows
// through the engine: the last windows close on the engine's ticks after
// the input has ended (no record comes to move time on), so every record
// is counted in exactly one emitted window.
func TestPipelineProcessingTimeWindowsClose(t *testing.T) {
	mem := sinktest.NewMemory()
	table := components.Builtin
	table.Sinks = append(slices.Clone(table.Sinks), components.NewKind("mem", pipelines.Caps{Transactional: true},
		func(ctx context.Context, c *memConfig, env *components.Env) (engine.Sink, error) {
			return mem.NewSink(), nil
		}))
	spec, err := table.Parse("p.yaml", []byte(`version: 1
name: ticks
source: {generate: {count: 2000, partitions: 2, keys: 5, rate: 4000}}
batch: {interval: 20ms}
transforms:
  - aggregate: {key: key, window: {tumbling: 100ms}, time: processing, functions: {n: count}, emit: on-close}
sink: {mem: {}}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := components.Build(t.Context(), spec, components.Options{Kinds: &table, DataDir: t.TempDir(),
		IdleExit: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	total, windows := 0, map[string]bool{}
	for _, r := range mem.Records("ticks") {
		var v struct {
			Key   string `json:"key"`
			Start string `json:"window_start"`
			N     int    `json:"n"`
		}
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatalf("output %s: %v", r.Value, err)
		}
		id := string(rune('0'+r.Partition)) + "/" + v.Key + "/" + v.Start
		if windows[id] {
			t.Fatalf("window %s emitted twice", id)
		}
		windows[id] = true
		total += v.N
	}
	if total != 2000 {
		t.Fatalf("the emitted windows count %d records, want 2000 (%d windows)", total, len(windows))
	}
}
