package file

import (
	"time"

	"github.com/sluicehq/sluice/pipelines"
)

// Config is the file sink block of a pipeline file: part files written
// into a directory, atomically per epoch.
type Config struct {
	Path   string `yaml:"path" required:"true" path:"true" example:"./out"`
	Format string `yaml:"format" default:"jsonl" enum:"jsonl|raw"` // jsonl | raw
	// Roll says when a part file becomes visible. Absent (nil, also in a
	// Config built in Go) means DefaultRoll: DefaultRollBytes or
	// DefaultRollInterval, whichever comes first.
	Roll *RollConfig `yaml:"roll" doc:"absent: roll at 128 MiB or 1m, whichever comes first"`
}

// The roll defaults; the default tags of RollConfig repeat them (a test
// keeps the two equal).
const (
	// DefaultRollBytes is 128 MiB: the block and split size HDFS, Spark and
	// Flink's file sink default to, so a rolled part file is one task's
	// worth for the readers that take these directories, and a busy
	// pipeline writes a few dozen files an hour instead of one per batch.
	DefaultRollBytes = 128 << 20
	// DefaultRollInterval bounds how long committed output waits before it
	// becomes visible. A minute keeps a continuous pipeline (a batch every
	// few milliseconds) to 60 part files an hour while readers still see
	// data about as fresh as a per-minute batch job would; Flink's file
	// sink chose the same.
	DefaultRollInterval = time.Minute

	// MaxRollBytes bounds roll.bytes (64 GiB): a part file is one unit a
	// reader takes whole, and the bytes of a part not yet rolled are
	// rewritten after a crash.
	MaxRollBytes = 64 << 30
	// MaxRollInterval bounds roll.interval: committed output hidden for
	// more than a day is a mistake, not a setting.
	MaxRollInterval = 24 * time.Hour
)

// RollConfig says when the part file that committed epochs are appended
// to becomes visible: once it holds Bytes or is Interval old, whichever
// comes first, and when the pipeline stops. Epochs in between commit
// (positions advance) but their output appears only then. PerEpoch instead
// makes every epoch with output its own part file, visible at its commit.
//
// In YAML an absent bytes or interval takes its default; in a RollConfig
// built in Go, 0 means "no such condition". Neither condition and no
// per-epoch is an error: the file would never roll while the pipeline runs.
type RollConfig struct {
	// The max tags repeat MaxRollBytes and MaxRollInterval.
	Bytes    int64              `yaml:"bytes" default:"134217728" min:"0" max:"68_719_476_736" doc:"128 MiB; 0 = no size condition; at most 64 GiB"`
	Interval pipelines.Duration `yaml:"interval" default:"1m" max:"24h" doc:"0 = no age condition"`
	PerEpoch bool               `yaml:"per-epoch" doc:"one part file per epoch, visible at its commit; without bytes and interval"`
}

// Validate rejects roll settings that contradict each other or would keep
// committed output hidden until the pipeline stops.
func (c *Config) Validate(k *pipelines.Check) {
	r := c.Roll
	if r == nil || !k.OK("roll", "roll.bytes", "roll.interval", "roll.per-epoch") {
		return
	}
	p := k.Path("roll")
	if r.PerEpoch {
		for _, set := range []struct {
			key     string
			written bool
		}{{"bytes", k.Written("roll.bytes", r.Bytes != 0)}, {"interval", k.Written("roll.interval", r.Interval != 0)}} {
			if set.written {
				k.KeyErrorf("roll."+set.key, "%s.%s has no effect with per-epoch: true, which makes every epoch its own part file; remove %s, or remove per-epoch to roll by size and age", p, set.key, set.key)
			}
		}
		return
	}
	if r.Bytes == 0 && r.Interval == 0 {
		k.KeyErrorf("roll", "%s has bytes: 0 and interval: 0, so committed output would stay hidden until the pipeline stops; set a limit such as interval: 1m or bytes: %d, or write per-epoch: true for one part file per epoch", p, DefaultRollBytes)
	}
}
