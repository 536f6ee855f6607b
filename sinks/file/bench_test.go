package file

import (
	"testing"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sinks/sinktest"
)

// BenchmarkCommit measures Write+Commit of one batch per iteration, fsyncs
// included, with the default roll and with one part file per epoch:
// go test -run XXX -bench Commit ./sinks/file/
func BenchmarkCommit(b *testing.B) {
	for _, roll := range []struct {
		name string
		roll *RollConfig
	}{{"default", nil}, {"per-epoch", &RollConfig{PerEpoch: true}}} {
		for _, format := range []string{"jsonl", "raw"} {
			b.Run("roll="+roll.name+"/format="+format, func(b *testing.B) {
				sinktest.BenchmarkCommit(b, func(b *testing.B) engine.Sink {
					s, err := New(Config{Path: b.TempDir(), Format: format, Roll: roll.roll}, nil, "")
					if err != nil {
						b.Fatal(err)
					}
					return s
				})
			})
		}
	}
}

// BenchmarkCommitTasks is BenchmarkCommit split into four tasks, all held
// by one process: go test -run XXX -bench 'Commit(Tasks)?$' ./sinks/file/
func BenchmarkCommitTasks(b *testing.B) {
	for _, format := range []string{"jsonl", "raw"} {
		b.Run("format="+format, func(b *testing.B) {
			sinktest.BenchmarkCommitTasks(b, func(b *testing.B) engine.TaskSink {
				s, err := New(Config{Path: b.TempDir(), Format: format}, nil, "")
				if err != nil {
					b.Fatal(err)
				}
				return s
			})
		})
	}
}
