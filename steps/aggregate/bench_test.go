package aggregate

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/state"
)

// BenchmarkAggregate is issue 16's benchmark in process: 100k keys over
// four tasks, tumbling minutes, count and sum, batches of 50k records,
// each committed; per record, with the in-memory and the durable (local
// store, no changelog) backends.
func BenchmarkAggregate(b *testing.B) {
	const keys, batchSize = 100_000, 50_000
	batches := make([][]engine.Record, 8)
	for i := range batches {
		for j := range batchSize {
			n := i*batchSize + j
			k := n % keys
			v := fmt.Appendf(nil, `{"amount":%d,"pad":"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnop"}`, n%1000)
			batches[i] = append(batches[i], engine.Record{Partition: int32(k % 4), Key: fmt.Appendf(nil, "k%d", k), Value: v,
				Time: time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Microsecond)})
		}
	}
	for _, backend := range []string{"memory", "durable"} {
		b.Run(backend, func(b *testing.B) {
			var be engine.StateBackend = state.NewMemory()
			if backend == "durable" {
				d, err := state.Open(context.Background(), state.Options{DataDir: b.TempDir(), Pipeline: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				be = d
			}
			defer be.Close()
			if err := be.Restore(context.Background(), nil, func(engine.Task) uint64 { return 0 }); err != nil {
				b.Fatal(err)
			}
			a, err := New(Config{Key: "key", Window: &Window{Tumbling: pipelines.Duration(time.Minute)}, Time: "event",
				Functions: map[string]string{"count": "count", "total": "sum(amount)"}, Emit: "every-batch"}, Options{Name: "aggregate@transforms[0]"})
			if err != nil {
				b.Fatal(err)
			}
			var process, commit time.Duration
			epoch := uint64(0)
			b.ResetTimer()
			for i := range b.N {
				ctx, sb := be.Begin(context.Background())
				t0 := time.Now()
				if _, _, err := a.Process(ctx, batches[i%len(batches)]); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				epoch++
				e := epoch
				if err := sb.Prepare(context.Background(), func(engine.Task) uint64 { return e }); err != nil {
					b.Fatal(err)
				}
				sb.Committed()
				process += t1.Sub(t0)
				commit += time.Since(t1)
			}
			b.ReportMetric(float64(process.Nanoseconds())/float64(b.N*batchSize), "process-ns/record")
			b.ReportMetric(float64(commit.Nanoseconds())/float64(b.N*batchSize), "commit-ns/record")
		})
	}
}
