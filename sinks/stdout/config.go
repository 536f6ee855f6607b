package stdout

import "github.com/sluicehq/sluice/pipelines"

// Config is the stdout sink block of a pipeline file; the sink prints
// records and is at-least-once only.
type Config struct {
	Format string `yaml:"format" default:"raw" enum:"jsonl|raw"` // jsonl | raw
}

// Validate has nothing to add to the tags.
func (c *Config) Validate(*pipelines.Check) {}
