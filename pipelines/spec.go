package pipelines

import (
	"reflect"
	"time"
)

// Spec is one pipeline file, version 1. Every block is one Go struct; the
// `yaml` tag names the key, `default` gives the value used when the key is
// absent, `required` marks keys that must be present. The loader walks the
// YAML node tree against these types, so unknown keys and wrong types are
// reported with FILE:LINE:COL. `enum` lists the accepted values of a
// string key, `min` the smallest accepted integer, `example` what a lint
// message suggests writing for a missing required key.
type Spec struct {
	Version    int         `yaml:"version" required:"true" example:"1"`
	Name       string      `yaml:"name" required:"true" example:"my-pipeline"`
	Source     Source      `yaml:"source" required:"true" example:"{generate: {count: 1000}}"`
	Batch      Batch       `yaml:"batch"`
	Delivery   string      `yaml:"delivery" default:"exactly-once" enum:"exactly-once|at-least-once|at-most-once"`
	Transforms []Transform `yaml:"transforms"`
	Sink       Sink        `yaml:"sink" required:"true" example:"{file: {path: ./out}}"`
	DeadLetter *DeadLetter `yaml:"dead-letter"`

	// File is the path the spec was loaded from (not a YAML key).
	File string `yaml:"-"`

	// where remembers the position of every key the file set, so checks
	// that run after decoding still report FILE:LINE:COL.
	where *positions
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
	MaxRecordsPerPartition int      `yaml:"max-records-per-partition" default:"50000" min:"1"`
}

// GenerateSource produces deterministic records: record i (counting from 0
// across all partitions) has value strconv.Itoa(i), key "k-<i mod keys>"
// and lands in partition i mod partitions.
type GenerateSource struct {
	Topic      string `yaml:"topic" default:"generate"`
	Count      int64  `yaml:"count" min:"0"` // 0 = unbounded
	Partitions int32  `yaml:"partitions" default:"1" min:"1"`
	Keys       int64  `yaml:"keys" default:"1" min:"0"` // 0 = records without a key
	Rate       int64  `yaml:"rate" min:"0"`             // records per second across partitions; 0 = as fast as possible
}

// KafkaSource reads a Kafka topic set, from the built-in broker or an
// external cluster.
type KafkaSource struct {
	Brokers       []string `yaml:"brokers" default:"[builtin]"`
	Topics        []string `yaml:"topics"`
	Pattern       string   `yaml:"pattern"`
	Mode          string   `yaml:"mode" default:"direct" enum:"direct|receiver"` // direct | receiver
	Start         string   `yaml:"start" default:"earliest" enum:"earliest|latest"`
	Group         string   `yaml:"group" doc:"default: the pipeline name"`
	BlockInterval Duration `yaml:"block-interval" default:"200ms"`
	MaxRate       int64    `yaml:"max-rate" min:"0"` // records/s per partition; 0 = unlimited
	WAL           *bool    `yaml:"wal" doc:"receiver mode; default true"`
	OnDataLoss    string   `yaml:"on-data-loss" default:"fail" enum:"fail|skip"` // records retention deleted before they were read, in both modes: fail | skip
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
	Mechanism string `yaml:"mechanism" required:"true" enum:"plain|scram-sha-256|scram-sha-512" example:"scram-sha-512"` // plain | scram-sha-256 | scram-sha-512
	Username  string `yaml:"username" required:"true" example:"sluice"`
	Password  string `yaml:"password" required:"true" example:"${KAFKA_PASSWORD}"`
}

// Transform is one step of the transform chain.
type Transform struct {
	// Plugin is a built-in plugin name or a path to an executable.
	Plugin   string         `yaml:"plugin" required:"true" example:"jsonpath"`
	Settings map[string]any `yaml:"settings"`
	Workers  int            `yaml:"workers" default:"1" min:"1"`
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
	Path   string `yaml:"path" required:"true" example:"./out"`
	Format string `yaml:"format" default:"jsonl" enum:"jsonl|raw"` // jsonl | raw
	// Roll says when a part file becomes visible. Absent (nil, also in a
	// spec built in Go) means the FileRoll defaults: DefaultRollBytes or
	// DefaultRollInterval, whichever comes first.
	Roll *FileRoll `yaml:"roll" doc:"absent: roll at 128 MiB or 1m, whichever comes first"`
}

// The file sink's roll defaults; the default tags of FileRoll repeat them
// (a test keeps the two equal).
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
)

// FileRoll says when the part file that committed epochs are appended to
// becomes visible: once it holds Bytes or is Interval old, whichever comes
// first, and when the pipeline stops. Epochs in between commit (positions
// advance) but their output appears only then. PerEpoch instead makes
// every epoch with output its own part file, visible at its commit.
//
// In YAML an absent bytes or interval takes its default; in a FileRoll
// built in Go, 0 means "no such condition". Neither condition and no
// per-epoch is an error: the file would never roll while the pipeline runs.
type FileRoll struct {
	Bytes    int64    `yaml:"bytes" default:"134217728" min:"0" doc:"128 MiB; 0 = no size condition"`
	Interval Duration `yaml:"interval" default:"1m" doc:"0 = no age condition"`
	PerEpoch bool     `yaml:"per-epoch" doc:"one part file per epoch, visible at its commit; without bytes and interval"`
}

// StdoutSink prints records; at-least-once only.
type StdoutSink struct {
	Format string `yaml:"format" default:"raw" enum:"jsonl|raw"` // jsonl | raw
}

// PostgresSink writes rows and the checkpoint in one transaction.
type PostgresSink struct {
	DSN         string            `yaml:"dsn" required:"true" example:"${PG_DSN}"`
	Table       string            `yaml:"table" required:"true" example:"clicks"`
	Columns     map[string]string `yaml:"columns"`
	CreateTable bool              `yaml:"create-table"`
	UpsertKey   []string          `yaml:"upsert-key"`
}

// KafkaSink produces into a topic inside a producer transaction, one per
// epoch, with a checkpoint record in the same transaction.
type KafkaSink struct {
	Brokers     []string `yaml:"brokers" default:"[builtin]"`
	Topic       string   `yaml:"topic" required:"true" example:"clicks-out"`
	Compression string   `yaml:"compression" default:"none" enum:"none|gzip|snappy|lz4|zstd"` // none | gzip | snappy | lz4 | zstd
	// CheckpointTopic holds the committed epochs; default
	// _sluice-checkpoint.<name>.
	CheckpointTopic string `yaml:"checkpoint-topic" doc:"default: _sluice-checkpoint.NAME"`
	// TransactionalID fences other instances of the pipeline; default
	// sluice.<name>.
	TransactionalID string `yaml:"transactional-id" doc:"default: sluice.NAME"`
	TLS             *TLS   `yaml:"tls"`
	SASL            *SASL  `yaml:"sasl"`
}

// DeadLetter says where rejected records go: exactly one of Topic or File.
// A topic lives on the kafka sink's cluster, or else on the kafka source's.
type DeadLetter struct {
	Topic string `yaml:"topic" doc:"on the kafka sink's cluster, else the kafka source's"`
	File  string `yaml:"file" doc:"a folder; with the file or postgres sink"`
}

// Duration is a time.Duration written as a Go duration string ("1s", "200ms").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// SourceKind returns the key of the source block that is set ("generate",
// "kafka", ...), or "" when none is. A validated spec has exactly one.
func (s *Spec) SourceKind() string { return presentBlock(reflect.ValueOf(&s.Source).Elem()) }

// SinkKind returns the key of the sink block that is set ("file", "stdout",
// "postgres", "kafka"), or "" when none is. A validated spec has exactly one.
func (s *Spec) SinkKind() string { return presentBlock(reflect.ValueOf(&s.Sink).Elem()) }

// presentBlocks lists the yaml keys of the non-nil pointer fields of a
// "one of" struct (Source, Sink), in declaration order.
func presentBlocks(v reflect.Value) []string {
	var out []string
	for _, f := range fieldsOf(v.Type()) {
		if fv := v.Field(f.index); fv.Kind() == reflect.Pointer && !fv.IsNil() {
			out = append(out, f.name)
		}
	}
	return out
}

func presentBlock(v reflect.Value) string {
	if b := presentBlocks(v); len(b) > 0 {
		return b[0]
	}
	return ""
}

// WALEnabled reports whether receiver mode writes blocks to the write-ahead
// log; it does unless the file says wal: false.
func (k *KafkaSource) WALEnabled() bool { return k.WAL == nil || *k.WAL }

// Delivery modes (the values of the delivery key).
const (
	ExactlyOnce = "exactly-once"
	AtLeastOnce = "at-least-once"
	AtMostOnce  = "at-most-once"
)

// String formats d as a Go duration ("1s", "200ms").
func (d Duration) String() string { return time.Duration(d).String() }
