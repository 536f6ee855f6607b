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

// benchSettings are the settings of the benchmarked built-ins.
var benchSettings = map[string]map[string]any{
	"filter": {"expr": `value matches "[05]$" || key endsWith "1"`},
}

// BenchmarkTransport compares built-in plugins in-process and through one
// subprocess, at several batch sizes of 100-byte records. bench/plugins
// prints the same comparison as one table.
func BenchmarkTransport(b *testing.B) {
	for _, plugin := range []string{"uppercase", "filter"} {
		for _, size := range []int{1, 100, 10000} {
			benchTransport(b, plugin, size)
		}
	}
}

func benchTransport(b *testing.B, plugin string, size int) {
	batch := BenchBatch(size)
	for _, transport := range []string{"in-process", "subprocess"} {
		b.Run(fmt.Sprintf("%s/%s/batch=%d", plugin, transport, size), func(b *testing.B) {
			tr := benchTransform(b, plugin, transport)
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

func benchTransform(b *testing.B, plugin, transport string) engine.Transform {
	if transport == "in-process" {
		p, _ := builtin.Lookup(plugin)
		tr, err := sdk.Local(context.Background(), p, plugin, benchSettings[plugin])
		if err != nil {
			b.Fatal(err)
		}
		return tr
	}
	tr, err := New(context.Background(), Config{Pipeline: "bench", Plugin: plugin, Settings: benchSettings[plugin],
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tr.Close() })
	return tr
}
