package components

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/sinks/file"
	kafkasink "github.com/sluicehq/sluice/sinks/kafka"
	"github.com/sluicehq/sluice/sinks/postgres"
)

func parse(t *testing.T, yaml string) *pipelines.Spec {
	t.Helper()
	spec, err := Builtin.Parse("p.yaml", []byte(yaml), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func envFor(spec *pipelines.Spec, opts Options) *Env {
	if opts.Kinds == nil {
		opts.Kinds = &Builtin
	}
	return &Env{Options: opts, Spec: spec, DeadLetter: spec.DeadLetter}
}

// Each dead-letter destination ends up where the README says: in the kafka
// sink's transaction, behind a forwarder for the file and postgres sinks,
// or kept by the sink itself.
func TestDeadLetterWiring(t *testing.T) {
	builtin := Options{BuiltinBroker: func(bool, bool) (string, error) { return "127.0.0.1:9", nil }, Logger: slog.New(slog.DiscardHandler)}
	cases := []struct {
		name, yaml string
		want       func(engine.Sink) bool
	}{
		{"topic with the kafka sink", `version: 1
name: p
source: {generate: {}}
sink: {kafka: {topic: out}}
dead-letter: {topic: dlq}
`, func(s engine.Sink) bool { _, ok := s.(*kafkasink.Sink); return ok }},
		{"topic with the file sink", `version: 1
name: p
source: {kafka: {topics: [in]}}
sink: {file: {path: ` + t.TempDir() + `}}
dead-letter: {topic: dlq}
`, func(s engine.Sink) bool { _, ok := s.(*kafkasink.Forwarding); return ok }},
		{"topic with the postgres sink", `version: 1
name: p
source: {kafka: {topics: [in]}}
sink: {postgres: {dsn: "postgres://u@127.0.0.1:9/db", table: t}}
dead-letter: {topic: dlq}
`, func(s engine.Sink) bool { _, ok := s.(*kafkasink.Forwarding); return ok }},
		{"file with the file sink", `version: 1
name: p
source: {generate: {}}
sink: {file: {path: ` + t.TempDir() + `}}
dead-letter: {file: ` + t.TempDir() + `}
`, func(s engine.Sink) bool { _, ok := s.(*file.Sink); return ok }},
		{"table with the postgres sink", `version: 1
name: p
source: {generate: {}}
sink: {postgres: {dsn: "postgres://u@127.0.0.1:9/db", table: t}}
dead-letter: {table: rejected}
`, func(s engine.Sink) bool { _, ok := s.(*postgres.Sink); return ok }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := parse(t, tc.yaml)
			got, err := buildSink(context.Background(), envFor(spec, builtin))
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			if !tc.want(got) {
				t.Fatalf("dead letters wired to %T", got)
			}
			if _, ok := got.(engine.DeadLetterSink); !ok {
				t.Fatalf("%T cannot take dead letters", got)
			}
		})
	}
}

// A pipeline naming the built-in broker in a command that does not start
// one is refused with a sentence saying what to write instead.
func TestBuiltinBrokerRefusedWithoutOne(t *testing.T) {
	spec := parse(t, `version: 1
name: p
source: {generate: {}}
sink: {kafka: {topic: out}}
`)
	_, err := buildSink(context.Background(), envFor(spec, Options{}))
	if err == nil || !strings.Contains(err.Error(), "list host:port addresses instead") {
		t.Fatalf("buildSink = %v; want brokers: [builtin] refused", err)
	}
}

// Every kind in the table hands the loader a fresh block of its own type.
func TestBuiltinTable(t *testing.T) {
	k := Builtin.Kinds()
	for _, role := range [][]pipelines.Kind{k.Sources, k.Sinks, k.Steps} {
		for _, kind := range role {
			if a, b := kind.Config(), kind.Config(); a == b {
				t.Errorf("%s: Config returns the same block twice", kind.Key)
			}
		}
	}
	if k.Source("kafka") == nil || !k.Source("kafka").Caps.Tasks || k.Source("generate").Caps.Tasks {
		t.Errorf("tasks capability: kafka source yes, generate no")
	}
}
