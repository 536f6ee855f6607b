package engine

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/record"
)

// Record, Header and Rejected are defined in internal/record, which plugin
// binaries import through plugins/sdk without linking the engine.
type (
	// Record is the unit that flows through a pipeline.
	Record = record.Record
	// Header is one Kafka record header.
	Header = record.Header
	// Rejected is a record a transform refused, with the reason. Rejected
	// records go to the pipeline's dead-letter destination in the same
	// epoch as the batch.
	Rejected = record.Rejected
)

// TopicPartition names one partition of one topic (or one stream of a source).
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Compare orders partitions by topic, then partition number (-1, 0, +1).
func (tp TopicPartition) Compare(o TopicPartition) int {
	if c := strings.Compare(tp.Topic, o.Topic); c != 0 {
		return c
	}
	return cmp.Compare(tp.Partition, o.Partition)
}

func (tp TopicPartition) String() string {
	return tp.Topic + "/" + strconv.FormatInt(int64(tp.Partition), 10)
}

// Positions is where a source resumes: for Kafka, topic/partition → next
// offset; for receiver mode, the write-ahead log sequence. Sinks treat it as
// opaque bytes (see MarshalJSON) stored next to their output.
type Positions map[TopicPartition]int64

// Clone returns a copy that shares nothing with p.
func (p Positions) Clone() Positions {
	if p == nil {
		return nil
	}
	c := make(Positions, len(p))
	for k, v := range p {
		c[k] = v
	}
	return c
}

// Equal reports whether p and q hold the same partitions at the same offsets.
func (p Positions) Equal(q Positions) bool {
	if len(p) != len(q) {
		return false
	}
	for k, v := range p {
		if w, ok := q[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Merge returns a copy of p with every entry of q laid over it.
func (p Positions) Merge(q Positions) Positions {
	c := make(Positions, len(p)+len(q))
	for k, v := range p {
		c[k] = v
	}
	for k, v := range q {
		c[k] = v
	}
	return c
}

// Sorted returns the partitions of p in (topic, partition) order.
func (p Positions) Sorted() []TopicPartition {
	tps := make([]TopicPartition, 0, len(p))
	for tp := range p {
		tps = append(tps, tp)
	}
	slices.SortFunc(tps, TopicPartition.Compare)
	return tps
}

func (p Positions) String() string {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, tp := range p.Sorted() {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%d", tp, p[tp])
	}
	b.WriteByte('}')
	return b.String()
}

// MarshalText is String: a text log shows positions as String does, while
// a JSON log (which prefers MarshalJSON) gets them structured.
func (p Positions) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

type positionJSON struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// MarshalJSON encodes p as a list sorted by topic and partition, so equal
// positions always encode to equal bytes.
func (p Positions) MarshalJSON() ([]byte, error) {
	list := make([]positionJSON, 0, len(p))
	for _, tp := range p.Sorted() {
		list = append(list, positionJSON{tp.Topic, tp.Partition, p[tp]})
	}
	return json.Marshal(list)
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (p *Positions) UnmarshalJSON(b []byte) error {
	var list []positionJSON
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("decode positions: %w", err)
	}
	m := make(Positions, len(list))
	for _, e := range list {
		m[TopicPartition{e.Topic, e.Partition}] = e.Offset
	}
	*p = m
	return nil
}

// Batch is one epoch's worth of records.
type Batch struct {
	Epoch   uint64    // strictly increasing per pipeline, starts at 1
	From    Positions // where this batch starts: the last committed positions
	Until   Positions // where the next batch starts
	Records []Record
}

// Limits bound one call to Source.Next.
type Limits struct {
	// MaxRecordsPerPartition caps how many records one partition contributes
	// to a batch; 0 means no cap.
	MaxRecordsPerPartition int
	// MaxRecords caps the whole batch (set by the rate controller); 0 means
	// no cap beyond the per-partition one.
	MaxRecords int
	// Wait is how long Next may block waiting for the first record when none
	// is available; 0 means return what is available now.
	Wait time.Duration
}
