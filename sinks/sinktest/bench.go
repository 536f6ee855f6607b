package sinktest

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// BatchSizes are the batch sizes every sink's commit benchmark reports.
var BatchSizes = []int{1_000, 100_000}

// BenchmarkCommit runs one sub-benchmark per batch size in BatchSizes:
// each iteration writes a batch of 100-byte records to a fresh sink from
// newSink and commits it, so fsyncs and transactions are included. It
// reports records/s next to ns/op.
func BenchmarkCommit(b *testing.B, newSink func(b *testing.B) engine.Sink) {
	for _, n := range BatchSizes {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			ctx := context.Background()
			s := newSink(b)
			defer s.Close()
			if _, _, err := s.Open(ctx, "bench"); err != nil {
				b.Fatal(err)
			}
			value := bytes.Repeat([]byte("x"), 100)
			recs := make([]engine.Record, n)
			for i := range recs {
				recs[i] = engine.Record{Topic: "bench", Partition: int32(i % 4), Offset: int64(i),
					Key: fmt.Appendf(nil, "k-%d", i%1000), Value: value, Time: time.Unix(1700000000, 0)}
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

// BenchmarkCommitTasks is BenchmarkCommit for a pipeline split into tasks:
// one process holds four tasks and commits them all in each round, as one
// process alone does, so its figures compare with BenchmarkCommit's.
func BenchmarkCommitTasks(b *testing.B, newSink func(b *testing.B) engine.TaskSink) {
	const tasks = 4
	for _, n := range BatchSizes {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			ctx := context.Background()
			s := newSink(b)
			defer s.Close()
			all := make([]engine.Task, tasks)
			for i := range all {
				all[i] = engine.Task(i)
			}
			if _, err := s.OpenTasks(ctx, "bench", all); err != nil {
				b.Fatal(err)
			}
			value := bytes.Repeat([]byte("x"), 100)
			recs := make([]engine.Record, n)
			for i := range recs {
				recs[i] = engine.Record{Topic: "bench", Partition: int32(i % tasks), Offset: int64(i / tasks),
					Key: fmt.Appendf(nil, "k-%d", i%1000), Value: value, Time: time.Unix(1700000000, 0)}
			}
			b.SetBytes(int64(n * 100))
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				round := uint64(i + 1)
				if err := s.Write(ctx, round, recs); err != nil {
					b.Fatal(err)
				}
				cps := make(map[engine.Task]engine.Checkpoint, tasks)
				for _, t := range all {
					cps[t] = engine.Checkpoint{Epoch: round,
						At: engine.Positions{{Topic: "bench", Partition: int32(t)}: int64(round) * int64(n/tasks)}}
				}
				if err := s.CommitTasks(ctx, round, cps); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "records/s")
		})
	}
}
