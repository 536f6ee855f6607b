package pipelines

import (
	"path/filepath"
	"time"
)

// Spec is one pipeline file, version 1. Every block is one Go struct; the
// `yaml` tag names the key, `default` gives the value used when the key is
// absent, `required` marks keys that must be present. The loader walks the
// YAML node tree against these types, so unknown keys and wrong types are
// reported with FILE:LINE:COL. `enum` lists the accepted values of a
// string key; `min` and `max` the smallest and largest accepted number,
// duration or size, written as the key's values are; `example` what a
// lint message suggests writing for a missing required key. Source, sink and
// transforms hold blocks of the kinds in the table the file is read with
// (`kind` names the role; see Kinds).
type Spec struct {
	Version    int         `yaml:"version" required:"true" example:"1"`
	Name       string      `yaml:"name" required:"true" example:"my-pipeline"`
	Source     Component   `yaml:"source" kind:"source" required:"true" example:"{generate: {count: 1000}}"`
	Batch      Batch       `yaml:"batch"`
	Delivery   string      `yaml:"delivery" default:"exactly-once" enum:"exactly-once|at-least-once|at-most-once"`
	Transforms []Component `yaml:"transforms" kind:"step"`
	Sink       Component   `yaml:"sink" kind:"sink" required:"true" example:"{file: {path: ./out}}"`
	DeadLetter *DeadLetter `yaml:"dead-letter"`

	// File is the path the spec was loaded from (not a YAML key).
	File string `yaml:"-"`

	// where remembers the position of every key the file set, so checks
	// that run after decoding still report FILE:LINE:COL.
	where *positions
	// warnings are what validation found that may still be fine when the
	// pipeline runs (a plugin executable not built yet).
	warnings Errors
}

// Warnings lists what validation found that does not stop the pipeline
// from loading but may stop it from running (a plugin executable not built
// yet); lint prints them, and with --strict fails on them.
func (s *Spec) Warnings() Errors { return s.warnings }

// Resolve returns a path written in the pipeline file as the pipeline uses
// it: a relative path is relative to the folder of the pipeline file, so a
// pipeline means the same files whatever the current directory is. An
// absolute path, and any path of a spec built in Go (no file), is
// returned as written.
func (s *Spec) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || s.File == "" || filepath.Dir(s.File) == "." {
		return p // a file in the current directory: the same path either way
	}
	return filepath.Join(filepath.Dir(s.File), p)
}

// Batch sets how batches are cut.
type Batch struct {
	// Interval between batch starts; 0 = continuous (the next batch starts
	// when the previous one commits).
	// The max tags repeat MaxBatchInterval and MaxRecordsPerPartition (a
	// test keeps them equal).
	Interval               Duration `yaml:"interval" default:"1s" max:"24h"`
	MaxRecordsPerPartition int      `yaml:"max-records-per-partition" default:"50000" min:"1" max:"1_000_000"`
}

// TLS configures a client connection to an external cluster.
type TLS struct {
	CA         string `yaml:"ca" path:"true"`
	Cert       string `yaml:"cert" path:"true"`
	Key        string `yaml:"key" path:"true"`
	SkipVerify bool   `yaml:"skip-verify"`
}

// SASL configures authentication to an external cluster.
type SASL struct {
	Mechanism string `yaml:"mechanism" required:"true" enum:"plain|scram-sha-256|scram-sha-512" example:"scram-sha-512"` // plain | scram-sha-256 | scram-sha-512
	Username  string `yaml:"username" required:"true" example:"sluice"`
	Password  string `yaml:"password" required:"true" example:"${KAFKA_PASSWORD}"`
}

// DeadLetter says where rejected records go: exactly one of Topic, File
// or Table. A topic lives on the kafka sink's cluster, or else on the kafka
// source's; File and Table are where a sink that keeps dead letters with
// its output keeps them (Caps.DeadLetters).
type DeadLetter struct {
	Topic string `yaml:"topic" doc:"on the kafka sink's cluster, else the kafka source's"`
	File  string `yaml:"file" path:"true" doc:"a folder; with the file sink"`
	Table string `yaml:"table" doc:"with the postgres sink: a table in the target table's schema, such as sluice_dead_letters"`
}

// Duration is a time.Duration written as a Go duration string ("1s", "200ms").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// SourceKind returns the key of the source's kind ("generate", "kafka",
// ...), or "" when none is set. A validated spec has one.
func (s *Spec) SourceKind() string { return s.Source.Kind }

// SinkKind returns the key of the sink's kind ("file", "stdout",
// "postgres", "kafka"), or "" when none is set. A validated spec has one.
func (s *Spec) SinkKind() string { return s.Sink.Kind }

// Delivery modes (the values of the delivery key).
const (
	ExactlyOnce = "exactly-once"
	AtLeastOnce = "at-least-once"
	AtMostOnce  = "at-most-once"
)

// String formats d as a Go duration ("1s", "200ms").
func (d Duration) String() string { return time.Duration(d).String() }
