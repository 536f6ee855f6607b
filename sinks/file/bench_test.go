package file

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
)

// benchRecords returns n records with 100-byte values.
func benchRecords(n int) []engine.Record {
	value := bytes.Repeat([]byte("x"), 100)
	recs := make([]engine.Record, n)
	for i := range recs {
		recs[i] = engine.Record{Topic: "bench", Partition: int32(i % 4), Offset: int64(i),
			Key: []byte(fmt.Sprintf("k-%d", i%1000)), Value: value, Time: time.Unix(1700000000, 0)}
	}
	return recs
}

// BenchmarkCommit measures Write+Commit of one batch per iteration, fsyncs
// included: go test -run XXX -bench Commit ./sinks/file/
func BenchmarkCommit(b *testing.B) {
	for _, format := range []string{"jsonl", "raw"} {
		for _, n := range []int{1_000, 100_000} {
			b.Run(fmt.Sprintf("format=%s/batch=%d", format, n), func(b *testing.B) {
				ctx := context.Background()
				s, err := New(pipelines.FileSink{Path: b.TempDir(), Format: format})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				if _, _, err := s.Open(ctx, "bench"); err != nil {
					b.Fatal(err)
				}
				recs := benchRecords(n)
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
