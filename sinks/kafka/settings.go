package kafka

import "github.com/sluicehq/sluice/pipelines"

// Settings is the kafka sink block of a pipeline file: output produced
// into a topic inside a producer transaction, one per epoch, with a
// checkpoint record in the same transaction. Config is what New takes:
// these settings with the brokers resolved.
type Settings struct {
	Brokers     []string `yaml:"brokers" default:"[builtin]"`
	Topic       string   `yaml:"topic" required:"true" example:"clicks-out"`
	Compression string   `yaml:"compression" default:"none" enum:"none|gzip|snappy|lz4|zstd"` // none | gzip | snappy | lz4 | zstd
	// CheckpointTopic holds the committed epochs; default
	// _sluice-checkpoint.<name>.
	CheckpointTopic string `yaml:"checkpoint-topic" doc:"default: _sluice-checkpoint.NAME"`
	// TransactionalID fences other instances of the pipeline; default
	// sluice.<name>.
	TransactionalID string          `yaml:"transactional-id" doc:"default: sluice.NAME"`
	TLS             *pipelines.TLS  `yaml:"tls"`
	SASL            *pipelines.SASL `yaml:"sasl"`
}

// Cluster is where the sink writes; its dead-letter topic is there too.
func (k *Settings) Cluster() pipelines.Cluster {
	return pipelines.Cluster{Brokers: k.Brokers, TLS: k.TLS, SASL: k.SASL}
}

// Validate checks the brokers and the topic names.
func (k *Settings) Validate(c *pipelines.Check) {
	c.Brokers("brokers", k.Brokers)
	c.Topic("topic", k.Topic)
	c.Topic("checkpoint-topic", k.CheckpointTopic)
}
