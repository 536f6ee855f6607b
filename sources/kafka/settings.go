package kafka

import (
	"time"

	"regexp"

	"github.com/sluicehq/sluice/pipelines"
)

// Settings is the kafka source block of a pipeline file: a Kafka topic
// set, on the built-in broker or an external cluster.
type Settings struct {
	Brokers       []string           `yaml:"brokers" default:"[builtin]"`
	Topics        []string           `yaml:"topics"`
	Pattern       string             `yaml:"pattern"`
	Mode          string             `yaml:"mode" default:"direct" enum:"direct|receiver"` // direct | receiver
	Start         string             `yaml:"start" default:"earliest" enum:"earliest|latest"`
	Group         string             `yaml:"group" doc:"default: the pipeline name"`
	BlockInterval pipelines.Duration `yaml:"block-interval" default:"200ms" max:"1m"`
	MaxRate       int64              `yaml:"max-rate" min:"0" max:"1_000_000_000" doc:"records/s per partition; 0 = unlimited"`
	WAL           *bool              `yaml:"wal" doc:"receiver mode; default true"`
	OnDataLoss    string             `yaml:"on-data-loss" default:"fail" enum:"fail|skip"` // records retention deleted before they were read, in both modes: fail | skip
	OnCorrupt     string             `yaml:"on-corrupt" default:"fail" enum:"fail|skip"`   // a record batch that cannot be decoded, in both modes: fail | skip (logged, counted in sluice_records_corrupt_total)
	// SessionTimeout is how long the group waits for a silent process of a
	// pipeline split into tasks before moving its tasks to the others.
	SessionTimeout pipelines.Duration `yaml:"session-timeout" default:"45s" doc:"direct mode split into tasks: how long a silent process keeps its tasks"`
	TLS            *pipelines.TLS     `yaml:"tls"`
	SASL           *pipelines.SASL    `yaml:"sasl"`
	// PartitionedBy declares what the producer partitions by, for lint
	// only: a step keeping state by one of these fields needs no
	// repartition before it.
	PartitionedBy []string `yaml:"partitioned-by" doc:"JSON fields whose records always share a partition (e.g. the one the producer keys by); lint: a step keyed by one needs no repartition"`
	// Internal marks the source of a stage after a repartition step, set
	// by the wiring (never in a file): its topic is the pipeline's own, so
	// what the stage committed is deleted from it (DirectConfig.Trim).
	Internal bool `yaml:"-"`
}

// InputPartitioning implements pipelines.PartitionedSource.
func (k *Settings) InputPartitioning() []string { return k.PartitionedBy }

// WALEnabled reports whether receiver mode writes blocks to the write-ahead
// log; it does unless the file says wal: false.
func (k *Settings) WALEnabled() bool { return k.WAL == nil || *k.WAL }

// Cluster is where the source reads; dead-letter topics of a sink that
// keeps its own go there too.
func (k *Settings) Cluster() pipelines.Cluster {
	return pipelines.Cluster{Brokers: k.Brokers, TLS: k.TLS, SASL: k.SASL}
}

// Validate checks the rules between keys.
func (k *Settings) Validate(c *pipelines.Check) {
	if c.OK("topics", "pattern") {
		switch {
		case len(k.Topics) > 0 && k.Pattern != "":
			c.KeyErrorf("pattern", "kafka source has both topics and pattern; keep one: topics: [a, b] reads those topics, pattern: REGEX reads every matching topic")
		case len(k.Topics) == 0 && k.Pattern == "":
			c.Errorf("", "kafka source needs topics or pattern; write topics: [clicks] or pattern: \"clicks-.*\"")
		}
	}
	if c.OK("pattern") && k.Pattern != "" {
		if _, err := regexp.Compile(k.Pattern); err != nil {
			c.Errorf("pattern", "pattern %q is not a valid regular expression (%v); write a Go regexp such as \"clicks-.*\"", k.Pattern, err)
		}
	}
	if c.OK("session-timeout") && (k.SessionTimeout.D() < time.Second || k.SessionTimeout.D() > 30*time.Minute) {
		c.Errorf("session-timeout", "session-timeout %s is out of range; write a duration from 1s to 30m (Kafka's default is 45s)", k.SessionTimeout.D())
	}
	c.Brokers("brokers", k.Brokers)
	if c.OK("block-interval") && k.BlockInterval.D() < pipelines.MinBlockInterval {
		c.Errorf("block-interval", "block-interval %s is below the %s minimum: every block is fsynced to the write-ahead log; write block-interval: %s or more", k.BlockInterval.D(), pipelines.MinBlockInterval, pipelines.MinBlockInterval)
	}
	if c.OK("wal") && !k.WALEnabled() && c.Delivery() == pipelines.ExactlyOnce {
		c.Errorf("wal", "wal: false is impossible with delivery: exactly-once: without the write-ahead log a receiver cannot replay a batch after a crash; remove wal: false, or write delivery: at-least-once or at-most-once")
	}
}
