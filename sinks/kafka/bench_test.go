package kafka

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/engine"
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
// iteration with 100-byte values, against the built-in broker (fsync on
// commit) and kfake (in memory): go test -run XXX -bench Commit ./sinks/kafka/
func BenchmarkCommit(b *testing.B) {
	brokers := map[string]func(testing.TB) []string{
		"builtin": builtinBroker,
		"kfake":   kfakeCluster,
	}
	for _, name := range []string{"builtin", "kfake"} {
		for _, n := range []int{1_000, 100_000} {
			b.Run(fmt.Sprintf("broker=%s/batch=%d", name, n), func(b *testing.B) {
				ctx := context.Background()
				s, err := New(Config{Brokers: brokers[name](b), Topic: "bench", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				if _, _, err := s.Open(ctx, "bench"); err != nil {
					b.Fatal(err)
				}
				value := bytes.Repeat([]byte("x"), 100)
				recs := make([]engine.Record, n)
				for i := range recs {
					recs[i] = engine.Record{Key: fmt.Appendf(nil, "k-%d", i%1000), Value: value, Time: time.Unix(1700000000, 0)}
				}
				b.SetBytes(int64(n * 100))
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					epoch := uint64(i + 1)
					if err := s.Write(ctx, epoch, recs); err != nil {
						b.Fatal(err)
					}
					if err := s.Commit(ctx, epoch, engine.Positions{{Topic: "bench"}: int64(epoch) * int64(n)}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "records/s")
			})
		}
	}
}
