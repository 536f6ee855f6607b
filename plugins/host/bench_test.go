package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/plugins/builtin"
	"github.com/sluicehq/sluice/plugins/sdk"
)

// BenchmarkUppercase compares the built-in uppercase plugin in-process and
// through one subprocess, at several batch sizes of 100-byte records.
// bench/plugins prints the same comparison as one table.
func BenchmarkUppercase(b *testing.B) {
	for _, size := range []int{1, 100, 10000} {
		batch := BenchBatch(size)
		for _, transport := range []string{"in-process", "subprocess"} {
			b.Run(fmt.Sprintf("%s/batch=%d", transport, size), func(b *testing.B) {
				tr := benchTransform(b, transport)
				b.SetBytes(int64(size * BenchRecordBytes))
				b.ResetTimer()
				for b.Loop() {
					if _, _, err := tr.Process(context.Background(), batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

func benchTransform(b *testing.B, transport string) engine.Transform {
	if transport == "in-process" {
		p, _ := builtin.Lookup("uppercase")
		tr, err := sdk.Local(context.Background(), p, "uppercase", nil)
		if err != nil {
			b.Fatal(err)
		}
		return tr
	}
	tr, err := New(context.Background(), Config{Pipeline: "bench", Plugin: "uppercase", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tr.Close() })
	return tr
}
