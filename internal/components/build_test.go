package wire

import (
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
	spec, err := pipelines.Parse("p.yaml", []byte(yaml), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// Each dead-letter destination ends up where the README says: in the kafka
// sink's transaction, behind a forwarder for the file and postgres sinks,
// or kept by the sink itself.
func TestDeadLetterWiring(t *testing.T) {
	builtin := Options{BuiltinBroker: func() (string, error) { return "127.0.0.1:9", nil }, Logger: slog.New(slog.DiscardHandler)}
	cases := []struct {
		name, yaml string
		want       func(engine.Sink) bool
		err        string
	}{
		{"topic with the kafka sink", `version: 1
name: p
source: {generate: {}}
sink: {kafka: {topic: out}}
dead-letter: {topic: dlq}
`, func(s engine.Sink) bool { _, ok := s.(*kafkasink.Sink); return ok }, ""},
		{"topic with the file sink", `version: 1
name: p
source: {kafka: {topics: [in]}}
sink: {file: {path: ` + t.TempDir() + `}}
dead-letter: {topic: dlq}
`, func(s engine.Sink) bool { _, ok := s.(*kafkasink.Forwarding); return ok }, ""},
		{"topic with the postgres sink", `version: 1
name: p
source: {kafka: {topics: [in]}}
sink: {postgres: {dsn: "postgres://u@127.0.0.1:9/db", table: t}}
dead-letter: {topic: dlq}
`, func(s engine.Sink) bool { _, ok := s.(*kafkasink.Forwarding); return ok }, ""},
		{"file with the file sink", `version: 1
name: p
source: {generate: {}}
sink: {file: {path: ` + t.TempDir() + `}}
dead-letter: {file: ` + t.TempDir() + `}
`, func(s engine.Sink) bool { _, ok := s.(*file.Sink); return ok }, ""},
		{"file with the postgres sink", `version: 1
name: p
source: {generate: {}}
sink: {postgres: {dsn: "postgres://u@127.0.0.1:9/db", table: t}}
dead-letter: {file: ./dlq}
`, func(s engine.Sink) bool { _, ok := s.(*postgres.Sink); return ok }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := parse(t, tc.yaml)
			sink, err := buildSink(spec, builtin)
			if err != nil {
				t.Fatal(err)
			}
			got, err := deadLetters(spec, spec.DeadLetter, sink, builtin)
			if err != nil {
				t.Fatal(err)
			}
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
	_, err := buildSink(spec, Options{})
	if err == nil || !strings.Contains(err.Error(), "list host:port addresses instead") {
		t.Fatalf("buildSink = %v; want brokers: [builtin] refused", err)
	}
}
