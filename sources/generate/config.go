package generate

import "github.com/sluicehq/sluice/pipelines"

// Config is the generate block of a pipeline file. Record i (counting from
// 0 across all partitions) has value strconv.Itoa(i), key "k-<i mod keys>"
// and lands in partition i mod partitions.
type Config struct {
	Topic      string `yaml:"topic" default:"generate"`
	Count      int64  `yaml:"count" min:"0"` // 0 = unbounded
	Partitions int32  `yaml:"partitions" default:"1" min:"1"`
	Keys       int64  `yaml:"keys" default:"1" min:"0"` // 0 = records without a key
	Rate       int64  `yaml:"rate" min:"0"`             // records per second across partitions; 0 = as fast as possible
}

// Validate has nothing to add to the tags.
func (c *Config) Validate(*pipelines.Check) {}
