package pipelines_test

import (
	"fmt"

	"github.com/sluicehq/sluice/internal/components"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/sources/generate"
)

func ExampleLoad() {
	// The table of kinds says which source, sink and step blocks a file
	// may hold; sluice's own is components.Builtin.
	spec, err := pipelines.Load("../examples/generate-to-file.yaml", components.Builtin.Kinds())
	if err != nil {
		fmt.Println(err) // every problem, one FILE:LINE:COL: line each
		return
	}
	fmt.Println(spec.Name, spec.SourceKind(), "->", spec.SinkKind(), spec.Delivery)
	fmt.Println("batch every", spec.Batch.Interval.D(), "up to", spec.Batch.MaxRecordsPerPartition, "records per partition")
	g := spec.Source.Config.(*generate.Config)
	fmt.Println("generate", g.Count, "records over", g.Partitions, "partitions")
	// Output:
	// generate-to-file generate -> file exactly-once
	// batch every 200ms up to 50000 records per partition
	// generate 100000 records over 4 partitions
}

func ExampleParse() {
	data := []byte(`version: 1
name: clicks
source:
  generate: {count: 10}
batch:
  intreval: 1s
sink:
  stdout:
`)
	_, err := pipelines.Parse("clicks.yaml", data, nil, components.Builtin.Kinds())
	fmt.Println(err)
	// Output:
	// clicks.yaml:6:3: unknown key "intreval" in batch; did you mean "interval"? valid keys: interval, max-records-per-partition
	// clicks.yaml:8:3: delivery: exactly-once (the default) is impossible with the stdout sink: it cannot take back output it wrote before a crash; write delivery: at-least-once, or use a transactional sink: file, postgres or kafka
}

func ExampleReference() {
	for _, b := range pipelines.Reference(components.Builtin.Kinds()) {
		if b.Path == "batch" {
			for _, k := range b.Keys {
				fmt.Printf("%s %s default=%s min=%s\n", k.Name, k.Type, k.Default, k.Min)
			}
		}
	}
	// Output:
	// interval duration default=1s min=
	// max-records-per-partition integer default=50000 min=1
}
