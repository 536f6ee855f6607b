package pipelines

import "time"

// Spec is one pipeline file, version 1. Every block is one Go struct; the
// `yaml` tag names the key, `default` gives the value used when the key is
// absent, `required` marks keys that must be present. The loader walks the
// YAML node tree against these types, so unknown keys and wrong types are
// reported with FILE:LINE:COL.
type Spec struct {
	Version    int         `yaml:"version" required:"true"`
	Name       string      `yaml:"name" required:"true"`
	Source     Source      `yaml:"source" required:"true"`
	Batch      Batch       `yaml:"batch"`
	Delivery   string      `yaml:"delivery" default:"exactly-once"`
	Transforms []Transform `yaml:"transforms"`
	Sink       Sink        `yaml:"sink" required:"true"`
	DeadLetter *DeadLetter `yaml:"dead-letter"`

	// File is the path the spec was loaded from (not a YAML key).
	File string `yaml:"-"`
}

// Source holds exactly one source block.
type Source struct {
	Generate *GenerateSource `yaml:"generate"`
	Kafka    *KafkaSource    `yaml:"kafka"`
}

// Batch sets how batches are cut.
type Batch struct {
	// Interval between batch starts; 0 = continuous (the next batch starts
	// when the previous one commits).
	Interval               Duration `yaml:"interval" default:"1s"`
	MaxRecordsPerPartition int      `yaml:"max-records-per-partition" default:"50000"`
}

// GenerateSource produces deterministic records: record i (counting from 0
// across all partitions) has value strconv.Itoa(i), key "k-<i mod keys>"
// and lands in partition i mod partitions.
type GenerateSource struct {
	Topic      string `yaml:"topic" default:"generate"`
	Count      int64  `yaml:"count"` // 0 = unbounded
	Partitions int32  `yaml:"partitions" default:"1"`
	Keys       int64  `yaml:"keys" default:"1"`
	Rate       int64  `yaml:"rate"` // records per second across partitions; 0 = as fast as possible
}

// KafkaSource reads a Kafka topic set, from the built-in broker or an
// external cluster.
type KafkaSource struct {
	Brokers       []string `yaml:"brokers" default:"[builtin]"`
	Topics        []string `yaml:"topics"`
	Pattern       string   `yaml:"pattern"`
	Mode          string   `yaml:"mode" default:"direct"` // direct | receiver
	Start         string   `yaml:"start" default:"earliest"`
	Group         string   `yaml:"group"` // default: the pipeline name
	BlockInterval Duration `yaml:"block-interval" default:"200ms"`
	MaxRate       int64    `yaml:"max-rate"`                    // records/s per partition; 0 = unlimited
	WAL           *bool    `yaml:"wal"`                         // receiver mode; default true
	OnDataLoss    string   `yaml:"on-data-loss" default:"fail"` // fail | skip
	TLS           *TLS     `yaml:"tls"`
	SASL          *SASL    `yaml:"sasl"`
}

// TLS configures a client connection to an external cluster.
type TLS struct {
	CA         string `yaml:"ca"`
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	SkipVerify bool   `yaml:"skip-verify"`
}

// SASL configures authentication to an external cluster.
type SASL struct {
	Mechanism string `yaml:"mechanism" required:"true"` // plain | scram-sha-256 | scram-sha-512
	Username  string `yaml:"username" required:"true"`
	Password  string `yaml:"password" required:"true"`
}

// Transform is one step of the transform chain.
type Transform struct {
	// Plugin is a built-in plugin name or a path to an executable.
	Plugin   string         `yaml:"plugin" required:"true"`
	Settings map[string]any `yaml:"settings"`
	Workers  int            `yaml:"workers" default:"1"`
	SHA256   string         `yaml:"sha256"`
	Timeout  Duration       `yaml:"timeout" default:"30s"` // per call
}

// Sink holds exactly one sink block.
type Sink struct {
	File     *FileSink     `yaml:"file"`
	Stdout   *StdoutSink   `yaml:"stdout"`
	Postgres *PostgresSink `yaml:"postgres"`
	Kafka    *KafkaSink    `yaml:"kafka"`
}

// FileSink writes part files into a directory, atomically per epoch.
type FileSink struct {
	Path   string `yaml:"path" required:"true"`
	Format string `yaml:"format" default:"jsonl"` // jsonl | raw
}

// StdoutSink prints records; at-least-once only.
type StdoutSink struct {
	Format string `yaml:"format" default:"raw"` // jsonl | raw
}

// PostgresSink writes rows and the checkpoint in one transaction.
type PostgresSink struct {
	DSN         string            `yaml:"dsn" required:"true"`
	Table       string            `yaml:"table" required:"true"`
	Columns     map[string]string `yaml:"columns"`
	CreateTable bool              `yaml:"create-table"`
	UpsertKey   []string          `yaml:"upsert-key"`
}

// KafkaSink produces into a topic inside a producer transaction.
type KafkaSink struct {
	Brokers []string `yaml:"brokers" default:"[builtin]"`
	Topic   string   `yaml:"topic" required:"true"`
	TLS     *TLS     `yaml:"tls"`
	SASL    *SASL    `yaml:"sasl"`
}

// DeadLetter says where rejected records go: exactly one of Topic or File.
type DeadLetter struct {
	Topic string `yaml:"topic"`
	File  string `yaml:"file"`
}

// Duration is a time.Duration written as a Go duration string ("1s", "200ms").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
