package file

import (
	"testing"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/sinks/sinktest"
)

// BenchmarkCommit measures Write+Commit of one batch per iteration, fsyncs
// included: go test -run XXX -bench Commit ./sinks/file/
func BenchmarkCommit(b *testing.B) {
	for _, format := range []string{"jsonl", "raw"} {
		b.Run("format="+format, func(b *testing.B) {
			sinktest.BenchmarkCommit(b, func(b *testing.B) engine.Sink {
				s, err := New(pipelines.FileSink{Path: b.TempDir(), Format: format})
				if err != nil {
					b.Fatal(err)
				}
				return s
			})
		})
	}
}
