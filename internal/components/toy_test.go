package components

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/sinks/sinktest"
)

// toyConfig is the block of a sink kind that exists only in this test.
type toyConfig struct {
	Label string `yaml:"label" required:"true" example:"demo"`
	Shout bool   `yaml:"shout"`
}

func (c *toyConfig) Validate(k *pipelines.Check) {
	if c.Shout && c.Label != strings.ToUpper(c.Label) {
		k.Errorf("label", "with shout: true the label must be upper case; write label: %s", strings.ToUpper(c.Label))
	}
}

// toyTable is Builtin plus one line: a transactional sink kind "toy" whose
// sinks write into mem.
func toyTable(mem *sinktest.Memory) *Table {
	t := Builtin
	t.Sinks = append(slices.Clone(Builtin.Sinks),
		NewKind("toy", pipelines.Caps{Transactional: true, DeadLetters: pipelines.DeadLettersKept},
			func(ctx context.Context, c *toyConfig, env *Env) (engine.Sink, error) { return mem.NewSink(), nil }))
	return &t
}

// A kind added with one table line, and no other edit, is read by the
// loader (lint), documented by the reference, and runs in a pipeline.
func TestToySinkKind(t *testing.T) {
	mem := sinktest.NewMemory()
	table := toyTable(mem)
	const yaml = `version: 1
name: toy-pipe
source: {generate: {count: 100, partitions: 2}}
batch: {interval: 0, max-records-per-partition: 7}
sink:
  toy: {label: %s}
`
	if _, err := Builtin.Parse("p.yaml", fmt.Appendf(nil, yaml, "demo"), nil); err == nil || !strings.Contains(err.Error(), `unknown key "toy" in sink`) {
		t.Fatalf("Builtin reads a toy sink: %v", err)
	}
	_, err := table.Parse("p.yaml", []byte(strings.Replace(fmt.Sprintf(yaml, "x"), "label: x", "label: low, shout: true", 1)), nil)
	if err == nil || !strings.Contains(err.Error(), "p.yaml:6:16: with shout: true the label must be upper case") {
		t.Fatalf("the toy block's Validate: %v", err)
	}
	_, err = table.Parse("p.yaml", []byte(strings.Replace(fmt.Sprintf(yaml, "x"), "{label: x}", "{}", 1)), nil)
	if err == nil || !strings.Contains(err.Error(), `missing required key "label" in sink.toy; add label: demo`) {
		t.Fatalf("the toy block's tags: %v", err)
	}

	var documented bool
	for _, b := range pipelines.Reference(table.Kinds()) {
		documented = documented || b.Path == "sink.toy"
	}
	if !documented {
		t.Error("the reference has no sink.toy block")
	}

	spec, err := table.Parse("p.yaml", fmt.Appendf(nil, yaml, "demo"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(context.Background(), spec, Options{Kinds: table, DataDir: t.TempDir(),
		IdleExit: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range mem.Records("toy-pipe") {
		got = append(got, string(r.Value))
	}
	slices.Sort(got)
	var want []string
	for i := range 100 {
		want = append(want, fmt.Sprint(i))
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the toy sink holds %d records %v; want each of 0..99 once", len(got), got)
	}
	epoch, at := mem.Committed("toy-pipe")
	if epoch < 2 || at.String() != (engine.Positions{{Topic: "generate", Partition: 0}: 50, {Topic: "generate", Partition: 1}: 50}).String() {
		t.Errorf("committed epoch %d at %s; want several epochs ending at 50 per partition", epoch, at)
	}
}
