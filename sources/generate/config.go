package generate

import "github.com/sluicehq/sluice/pipelines"

// Upper bounds of the generate block; the max tags of Config repeat them (a
// test keeps the two equal).
const (
	// MaxPartitions bounds partitions: the source keeps a position per
	// partition and a batch reads up to max-records-per-partition from
	// each; the built-in broker allows as many per topic
	// (broker.MaxPartitionsPerTopic).
	MaxPartitions = 10_000
	// MaxCount bounds count: a quadrillion records is years at any rate;
	// write 0 for a source that never ends.
	MaxCount = 1_000_000_000_000_000
	// MaxKeys bounds keys, as MaxCount does count.
	MaxKeys = MaxCount
	// MaxRate bounds rate (records/s): a billion a second is beyond any
	// pipeline; write 0 for no limit.
	MaxRate = 1_000_000_000
)

// Config is the generate block of a pipeline file. Record i (counting from
// 0 across all partitions) has value strconv.Itoa(i), key "k-<i mod keys>"
// and lands in partition i mod partitions.
type Config struct {
	Topic      string `yaml:"topic" default:"generate"`
	Count      int64  `yaml:"count" min:"0" max:"1_000_000_000_000_000" doc:"0 = unbounded"`
	Partitions int32  `yaml:"partitions" default:"1" min:"1" max:"10000"`
	Keys       int64  `yaml:"keys" default:"1" min:"0" max:"1_000_000_000_000_000" doc:"0 = records without a key"`
	Rate       int64  `yaml:"rate" min:"0" max:"1_000_000_000" doc:"records/s across partitions; 0 = as fast as possible"`
}

// Validate has nothing to add to the tags.
func (c *Config) Validate(*pipelines.Check) {}
