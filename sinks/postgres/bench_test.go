package postgres

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
)

// BenchmarkCommit measures Write (COPY) + Commit of one batch of 100-byte
// records per iteration into a table with the default columns. Needs
// SLUICE_TEST_PG_DSN: go test -run XXX -bench Commit ./sinks/postgres/
func BenchmarkCommit(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			dsn, schema, _ := freshSchema(b)
			ctx := context.Background()
			s, err := New(pipelines.PostgresSink{DSN: dsn, Table: schema + ".bench", CreateTable: true})
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
				recs[i] = engine.Record{Topic: "bench", Partition: int32(i % 4), Offset: int64(i),
					Key: []byte(fmt.Sprintf("k-%d", i%1000)), Value: value, Time: time.Unix(1700000000, 0)}
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
			b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "rows/s")
		})
	}
}
