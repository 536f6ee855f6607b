// Package repartition is the repartition step: it re-keys records by a
// field so that every record of one key lands in one partition, hence one
// task, of an internal topic the rest of the pipeline reads back. The
// cutting itself (the stage that writes the topic, the stage that reads it)
// is wired in internal/components; this package holds the block, the
// re-keying transform and the internal topics' administration
// (ARCHITECTURE §20).
package repartition

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
)

// TopicPrefix starts the name of every internal topic of a repartition:
// _sluice-repartition.PIPELINE.N.
const TopicPrefix = "_sluice-repartition."

// Topic names the internal topic of a pipeline's n-th repartition step
// (n from 1).
func Topic(pipeline string, n int) string { return TopicPrefix + pipeline + "." + strconv.Itoa(n) }

// Config is the repartition item of transforms: - repartition: {key: FIELD}.
type Config struct {
	Repartition Settings `yaml:"repartition" required:"true" doc:"cut the pipeline here: re-key by key, through an internal topic"`
}

// Settings is the block under repartition:.
type Settings struct {
	Key string `yaml:"key" required:"true" example:"user.id" doc:"a dot-separated path into the JSON value (strings keep no quotes), or key / value: the whole record key / value"`
}

// Whole-record keys: Key names the record's key or value itself rather
// than a JSON field.
const (
	KeyRecordKey   = "key"
	KeyRecordValue = "value"
)

// Validate checks the field path; the rules between blocks (a Kafka
// source, exactly-once) are checked by the loader through Caps.Stage.
func (c *Config) Validate(k *pipelines.Check) {
	if !k.OK("repartition", "repartition.key") {
		return
	}
	for _, p := range strings.Split(c.Repartition.Key, ".") {
		if p == "" {
			k.Errorf("repartition.key", "key %q has an empty part; write a dot-separated path such as user.id, or key or value", c.Repartition.Key)
			return
		}
	}
}

// RepartitionKey is the field the step partitions by (pipelines lint reads
// it to tell whether a keyed step's input is partitioned by its key).
func (c *Config) RepartitionKey() string { return c.Repartition.Key }

// Rekey is the transform that ends the stage before a repartition: it sets
// each record's key to the field, so the internal topic's partitioner
// (Kafka's murmur2 of the key) sends every record of one key to one
// partition. A record whose value is not JSON or lacks the field is
// rejected.
type Rekey struct {
	key  string
	path []string
}

// NewRekey returns the transform for c.
func NewRekey(c Config) *Rekey {
	key := c.Repartition.Key
	r := &Rekey{key: key}
	if key != KeyRecordKey && key != KeyRecordValue {
		r.path = strings.Split(key, ".")
	}
	return r
}

// Process implements engine.Transform.
func (r *Rekey) Process(ctx context.Context, in []engine.Record) ([]engine.Record, []engine.Rejected, error) {
	if r.key == KeyRecordKey {
		return in, nil, nil
	}
	out := make([]engine.Record, 0, len(in))
	var rejected []engine.Rejected
	for _, rec := range in {
		k, err := r.keyOf(rec.Value)
		if err != nil {
			rejected = append(rejected, engine.Rejected{Record: rec, Reason: err.Error(), Plugin: "repartition"})
			continue
		}
		rec.Key = k
		out = append(out, rec)
	}
	return out, rejected, nil
}

// keyOf returns the key of a record whose value is v.
func (r *Rekey) keyOf(v []byte) ([]byte, error) {
	if r.path == nil {
		return v, nil
	}
	var doc any
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber() // a long integer key keeps its digits
	if err := d.Decode(&doc); err != nil {
		return nil, fmt.Errorf("repartition by %s: the value is not JSON (%v); repartition by value, or send JSON", r.key, err)
	}
	for _, p := range r.path {
		switch d := doc.(type) {
		case map[string]any:
			next, ok := d[p]
			if !ok {
				return nil, fmt.Errorf("repartition by %s: the value has no field %s", r.key, r.key)
			}
			doc = next
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(d) || strconv.Itoa(i) != p {
				return nil, fmt.Errorf("repartition by %s: the value has no field %s", r.key, r.key)
			}
			doc = d[i]
		default:
			return nil, fmt.Errorf("repartition by %s: the value has no field %s", r.key, r.key)
		}
	}
	if s, ok := doc.(string); ok {
		return []byte(s), nil
	}
	return json.Marshal(doc)
}

// Close implements engine.Transform.
func (r *Rekey) Close() error { return nil }

// CheckpointTopic names the checkpoint topic of the kafka sink that writes
// the pipeline's n-th internal topic.
func CheckpointTopic(pipeline string, n int) string { return Topic(pipeline, n) + ".checkpoints" }
