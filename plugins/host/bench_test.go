package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/plugins/builtin"
	"github.com/sluicehq/sluice/plugins/sdk"
	"github.com/sluicehq/sluice/state"
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

// BenchmarkStatefulPlugin is a per-record read-modify-write of keyed state
// through a plugin subprocess: a count per key, 1,000 keys over 4 tasks,
// batches of 10,000 records on state.Memory, each batch committed. "get"
// reads each key on first use (a round trip per key and batch), "prefetch"
// reads the batch's keys first (a round trip per task and batch).
func BenchmarkStatefulPlugin(b *testing.B) {
	for _, mode := range []string{"get", "prefetch"} {
		b.Run(mode, func(b *testing.B) {
			cmd := map[string]string{"get": "incr", "prefetch": "count"}[mode]
			batch := BenchBatch(10000)
			for i := range batch {
				batch[i].Value = fmt.Appendf(nil, "%s k%03d", cmd, i%1000)
			}
			self, err := os.Executable()
			if err != nil {
				b.Fatal(err)
			}
			plugin := filepath.Join(b.TempDir(), testStatePluginName)
			if err := os.Symlink(self, plugin); err != nil {
				b.Fatal(err)
			}
			tr, err := New(context.Background(), Config{Pipeline: "bench", Plugin: plugin, State: true,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
			m := state.NewMemory()
			for b.Loop() {
				ctx, sb := m.Begin(context.Background())
				if _, _, err := tr.Process(ctx, batch); err != nil {
					b.Fatal(err)
				}
				if err := sb.Prepare(context.Background(), func(engine.Task) uint64 { return 1 }); err != nil {
					b.Fatal(err)
				}
				sb.Committed()
			}
			b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "records/s")
		})
	}
}
