package kafka

import (
	"io"
	"log/slog"
	"testing"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sinks/sinktest"
)

// builtinBroker starts the embedded broker on a temporary directory.
func builtinBroker(t testing.TB) []string {
	t.Helper()
	b, err := broker.Open(t.TempDir(), broker.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.Listen("127.0.0.1:0", nil); err != nil {
		t.Fatal(err)
	}
	return []string{b.Addr()}
}

// BenchmarkCommit measures Write+Commit of one epoch (one transaction) per
// iteration, against the built-in broker (fsync on commit) and kfake (in
// memory): go test -run XXX -bench Commit ./sinks/kafka/
func BenchmarkCommit(b *testing.B) {
	for _, br := range []struct {
		name  string
		start func(testing.TB) []string
	}{{"builtin", builtinBroker}, {"kfake", kfakeCluster}} {
		b.Run("broker="+br.name, func(b *testing.B) {
			sinktest.BenchmarkCommit(b, func(b *testing.B) engine.Sink {
				s, err := New(Config{Brokers: br.start(b), Topic: "bench", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err != nil {
					b.Fatal(err)
				}
				return s
			})
		})
	}
}
