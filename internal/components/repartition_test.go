package components

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/kafkatest"
	"github.com/sluicehq/sluice/steps/repartition"
)

// A pipeline cut by a repartition step: records spread round-robin over
// three partitions are re-keyed by their user field, each lands in the
// partition of the internal topic Kafka's partitioner (murmur2, as
// kafka-go's Murmur2Balancer computes it) gives its key, and the stage
// after the cut writes every record once into the pipeline's sink. With
// TrimInternalTopics, what that stage committed is deleted from the
// internal topic.
func TestRepartitionPlacesRecordsByKey(t *testing.T) {
	const partitions, n = 3, 600
	addrs := kafkatest.Builtin(t, "in", partitions)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic("in"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range n {
		v := fmt.Sprintf(`{"user":"u%d","i":%d}`, i%37, i)
		cl.Produce(ctx, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: []byte(v)}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	spec, err := Builtin.Parse("p.yaml", fmt.Appendf(nil, `version: 1
name: rk
source: {kafka: {brokers: [%s], topics: [in]}}
batch: {interval: 0, max-records-per-partition: 50}
transforms:
  - repartition: {key: user}
sink: {kafka: {brokers: [%[1]s], topic: out}}
`, addrs[0]), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(ctx, spec, Options{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), IdleExit: 500 * time.Millisecond,
		TrimInternalTopics: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(p.Stages()); got != 1 || p.Stages()[0].Name() != "rk.repartition-1" {
		t.Fatalf("stages after %s: %d, want one named rk.repartition-1", p.Name(), got)
	}
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}

	internal := repartition.Topic("rk", 1)
	var mm kafkago.Murmur2Balancer
	for _, r := range kafkatest.ReadCommitted(t, addrs, internal) {
		var v struct{ User string }
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != v.User {
			t.Fatalf("record %s keyed %q, want its user", r.Value, r.Key)
		}
		if want := mm.Balance(kafkago.Message{Key: r.Key}, 0, 1, 2); int(r.Partition) != want {
			t.Fatalf("key %s in partition %d; Kafka's partitioner puts it in %d", r.Key, r.Partition, want)
		}
	}
	seen := map[string]int{}
	for _, r := range kafkatest.ReadCommitted(t, addrs, "out") {
		seen[string(r.Value)]++
	}
	for i := range n {
		if v := fmt.Sprintf(`{"user":"u%d","i":%d}`, i%37, i); seen[v] != 1 {
			t.Fatalf("%s is in the output %d times, want once", v, seen[v])
		}
	}

	adm := kadm.NewClient(cl)
	topics, err := adm.ListTopics(ctx, internal)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(topics[internal].Partitions); got != partitions {
		t.Fatalf("%s has %d partitions, want the source's %d", internal, got, partitions)
	}
	starts, err := adm.ListStartOffsets(ctx, internal)
	if err != nil {
		t.Fatal(err)
	}
	var trimmed int64
	starts.Each(func(o kadm.ListedOffset) { trimmed += o.Offset })
	if trimmed == 0 {
		t.Fatalf("nothing was deleted from %s after the stage reading it committed", internal)
	}
}

// A repartition step is refused, in one line at the step, where its
// internal topic cannot be written and read back exactly once; a pipeline
// name that a stage of another pipeline runs under is refused.
func TestRepartitionValidation(t *testing.T) {
	const kafkaSrc = "source: {kafka: {topics: [in]}}\n"
	const step = "transforms:\n  - repartition: {key: user.id}\n"
	cases := []struct{ name, yaml, want string }{
		{"generate source", "source: {generate: {count: 1}}\n" + step + "sink: {file: {path: out}}\n",
			"p.yaml:5:5: repartition needs a kafka source"},
		{"at-least-once", kafkaSrc + "delivery: at-least-once\n" + step + "sink: {file: {path: out}}\n",
			"p.yaml:6:5: repartition needs delivery: exactly-once"},
		{"dead letters in files", kafkaSrc + step + "sink: {file: {path: out}}\ndead-letter: {file: dl}\n",
			"p.yaml:7:1: with a repartition step dead letters commit in the internal topic's transaction, so they go to a topic"},
		{"empty path part", kafkaSrc + "transforms:\n  - repartition: {key: user..id}\nsink: {file: {path: out}}\n",
			`p.yaml:5:24: key "user..id" has an empty part`},
		{"stage name", "version: 1\nname: x.repartition-2\n" + kafkaSrc + "sink: {file: {path: out}}\n",
			`p.yaml:2:7: name "x.repartition-2" ends like the stage of a pipeline`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			yaml := c.yaml
			if !strings.HasPrefix(yaml, "version") {
				yaml = "version: 1\nname: p\n" + yaml
			}
			_, err := Builtin.Parse("p.yaml", []byte(yaml), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			if strings.Count(err.Error(), "\n") > 0 {
				t.Fatalf("more than one line: %v", err)
			}
		})
	}
	ok := "version: 1\nname: p\n" + kafkaSrc + step + "sink: {postgres: {dsn: postgres://x/y, table: t}}\ndead-letter: {topic: dl}\n"
	if _, err := Builtin.Parse("p.yaml", []byte(ok), nil); err != nil {
		t.Fatalf("a repartition with a kafka source, exactly-once and dead letters in a topic: %v", err)
	}
}

// Lint warns, at the key, when a step keeps state by a key its input is
// not partitioned by, and says to add a repartition; not when the step
// keys by the record key or follows a repartition by its key.
func TestLintWarnsWithoutRepartition(t *testing.T) {
	const head = "version: 1\nname: p\nsource: {kafka: {topics: [in]}}\ntransforms:\n"
	const sink = "sink: {file: {path: out}}\n"
	agg := func(key string) string {
		return "  - aggregate: {key: " + key + ", functions: {n: count}}\n"
	}
	cases := []struct{ name, steps, want string }{
		{"by a field", agg("user"),
			"p.yaml:5:22: the aggregate step keys by user, but its input is partitioned by the record key (as Kafka's default partitioner places records), so the records of one user can land in different tasks, each with its own state; add - repartition: {key: user} before it, unless the input is already partitioned by user (then say so: source.kafka.partitioned-by: [user])"},
		{"dedupe by a field", "  - dedupe: {key: id, within: 1m}\n", "p.yaml:5:19: the dedupe step keys by id"},
		{"repartitioned by another field", "  - repartition: {key: user}\n" + agg("value"),
			"p.yaml:6:22: the aggregate step keys by value, but its input is partitioned by the earlier repartition's user, so the records of one value can land in different tasks, each with its own state; add - repartition: {key: value} before it, or repartition by value there"},
		{"by the record key", agg("key"), ""},
		{"repartitioned by its field", "  - repartition: {key: user}\n" + agg("user"), ""},
		{"repartitioned, by the record key", "  - repartition: {key: user}\n" + agg("key"), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec, err := Builtin.Parse("p.yaml", []byte(head+c.steps+sink), nil)
			if err != nil {
				t.Fatal(err)
			}
			w := spec.Warnings().Error()
			if len(spec.Warnings()) == 0 {
				w = ""
			}
			switch {
			case c.want == "" && w != "":
				t.Fatalf("warned %q", w)
			case c.want != "" && (!strings.HasPrefix(w, c.want) || len(spec.Warnings()) != 1):
				t.Fatalf("warnings %q, want one starting %q", w, c.want)
			}
		})
	}
	// The source says its records are partitioned by user (and by id,
	// which determines the user): no warning.
	declared := "version: 1\nname: p\nsource: {kafka: {topics: [in], partitioned-by: [user, id]}}\ntransforms:\n" +
		"  - dedupe: {key: id, within: 1m}\n" + agg("user") + sink
	if spec, err := Builtin.Parse("p.yaml", []byte(declared), nil); err != nil || len(spec.Warnings()) != 0 {
		t.Fatalf("partitioned-by: %v, warnings %v", err, spec.Warnings())
	}
	// A source not on Kafka cannot be repartitioned: no advice.
	spec, err := Builtin.Parse("p.yaml", []byte("version: 1\nname: p\nsource: {generate: {count: 1}}\ntransforms:\n"+agg("user")+sink), nil)
	if err != nil || len(spec.Warnings()) != 0 {
		t.Fatalf("generate source: %v, warnings %v", err, spec.Warnings())
	}
}
