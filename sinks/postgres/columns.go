package postgres

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sluicehq/sluice/engine"
)

// Record parts a column can take; anything else must be value.<field>....
const (
	partKey       = "key"
	partValue     = "value"
	partTopic     = "topic"
	partPartition = "partition"
	partOffset    = "offset"
	partTimestamp = "timestamp"
)

// defaultColumns is the mapping when the pipeline sets no columns: every
// record part into a column of the same name.
var defaultColumns = map[string]string{
	partTopic: partTopic, partPartition: partPartition, partOffset: partOffset,
	partKey: partKey, partValue: partValue, partTimestamp: partTimestamp,
}

// createTypes are the column types create-table uses per record part.
// Key and value are bytea because Kafka's are bytes: text would reject a
// record that is not valid UTF-8. JSON fields are jsonb, which holds any
// JSON value.
var createTypes = map[string]string{
	partTopic: "text", partPartition: "integer", partOffset: "bigint",
	partKey: "bytea", partValue: "bytea", partTimestamp: "timestamptz",
}

// column is one target column and where its value comes from.
type column struct {
	name string
	part string   // a record part, or "" for a JSON field of the value
	path []string // the JSON field path under the value
	oid  uint32   // the column's type in the table, learnt at Open
	typ  string   // its name, for messages

	// How the binary COPY writer (copy.go) fills the column, chosen at
	// Open by planEncoding; encNone sends the table's rows through pgx.
	enc     encoding
	numeric pgtype.EncodePlan // pgx's encoder for a JSON field into numeric
}

func (c *column) source() string {
	if c.part != "" {
		return c.part
	}
	return "value." + strings.Join(c.path, ".")
}

// parseColumns turns the pipeline's columns block into columns sorted by
// name, so COPY column order is stable.
func parseColumns(m map[string]string) ([]column, error) {
	if len(m) == 0 {
		m = defaultColumns
	}
	cols := make([]column, 0, len(m))
	for name, src := range m {
		if name == "" {
			return nil, fmt.Errorf("columns: a column name is empty")
		}
		c := column{name: name}
		switch src {
		case partKey, partValue, partTopic, partPartition, partOffset, partTimestamp:
			c.part = src
		default:
			rest, ok := strings.CutPrefix(src, "value.")
			if !ok || rest == "" || slices.Contains(strings.Split(rest, "."), "") {
				return nil, fmt.Errorf("columns: %s: %q is not a record part; write one of key, value, topic, partition, offset, timestamp, or a JSON field of the value such as value.user.id", name, src)
			}
			c.path = strings.Split(rest, ".")
		}
		cols = append(cols, c)
	}
	slices.SortFunc(cols, func(a, b column) int { return strings.Compare(a.name, b.name) })
	return cols, nil
}

// createType is the column type create-table uses for c.
func (c *column) createType() string {
	if c.part == "" {
		return "jsonb"
	}
	return createTypes[c.part]
}

// Type OIDs the JSON-field conversion knows (pg_type.oid, stable across
// PostgreSQL versions).
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidBPChar      = 1042
	oidVarchar     = 1043
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidJSONB       = 3802
)

// checkType rejects, at Open, a JSON-field column whose type the
// conversion cannot fill; record parts are left to pgx's own encoders.
func (c *column) checkType() error {
	if c.part != "" {
		return nil
	}
	switch c.oid {
	case oidBool, oidBytea, oidInt2, oidInt4, oidInt8, oidText, oidJSON, oidJSONB, oidFloat4, oidFloat8,
		oidBPChar, oidVarchar, oidTimestamp, oidTimestamptz, oidNumeric:
		return nil
	}
	return fmt.Errorf("column %s has type %s, which a JSON field (%s) cannot fill; use text, varchar, integer, bigint, smallint, real, double precision, numeric, boolean, json, jsonb, timestamptz or bytea",
		c.name, c.typ, c.source())
}

// rowBuilder builds the values of one record for pgx's CopyFrom (the path
// for tables the binary COPY writer cannot fill), reusing the decoded value
// across the JSON-field columns.
type rowBuilder struct {
	cols []column
	obj  map[string]json.RawMessage
}

func (b *rowBuilder) values(r *engine.Record, dst []any) ([]any, error) {
	b.obj = nil
	for i := range b.cols {
		c := &b.cols[i]
		v, err := b.value(c, r)
		if err != nil {
			return nil, fmt.Errorf("record %s/%d@%d, column %s (%s): %w", r.Topic, r.Partition, r.Offset, c.name, c.source(), err)
		}
		dst = append(dst, v)
	}
	return dst, nil
}

func (b *rowBuilder) value(c *column, r *engine.Record) (any, error) {
	switch c.part {
	case partKey:
		return bytesFor(c.oid, r.Key), nil
	case partValue:
		return bytesFor(c.oid, r.Value), nil
	case partTopic:
		return r.Topic, nil
	case partPartition:
		return r.Partition, nil
	case partOffset:
		return r.Offset, nil
	case partTimestamp:
		if r.Time.IsZero() {
			return nil, nil
		}
		return r.Time, nil
	}
	raw, ok, err := b.field(c, r)
	if err != nil || !ok {
		return nil, err // a missing field is NULL
	}
	return fromJSON(c.oid, raw)
}

// field returns the JSON text of c's field in r's value, and false if the
// value has no such field. It decodes the value once per row (b.obj) for
// all the row's JSON-field columns; whoever starts a row resets b.obj.
func (b *rowBuilder) field(c *column, r *engine.Record) (json.RawMessage, bool, error) {
	if b.obj == nil {
		if err := json.Unmarshal(r.Value, &b.obj); err != nil || b.obj == nil {
			return nil, false, fmt.Errorf("the value is not a JSON object, so it has no field %s; map the value itself with value, or send JSON", c.source())
		}
	}
	raw, ok := b.obj[c.path[0]]
	for _, f := range c.path[1:] {
		var m map[string]json.RawMessage
		if !ok || json.Unmarshal(raw, &m) != nil {
			return nil, false, nil
		}
		raw, ok = m[f]
	}
	return raw, ok, nil
}

// bytesFor passes key and value bytes as the column wants them: bytes for
// bytea and json(b), a string for text types.
func bytesFor(oid uint32, b []byte) any {
	if b == nil {
		return nil
	}
	switch oid {
	case oidBytea, oidJSON, oidJSONB:
		return b
	}
	return string(b)
}

// fromJSON converts one JSON value for a column of type oid.
func fromJSON(oid uint32, raw json.RawMessage) (any, error) {
	raw = bytes.TrimSpace(raw)
	if string(raw) == "null" {
		return nil, nil
	}
	if oid == oidJSON || oid == oidJSONB {
		return []byte(raw), nil
	}
	var s string
	isString := len(raw) > 0 && raw[0] == '"'
	if isString {
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
	} else {
		s = string(raw)
	}
	switch oid {
	case oidText, oidVarchar, oidBPChar:
		return s, nil // strings unquoted, anything else as its JSON text
	case oidBytea:
		return []byte(s), nil
	case oidBool:
		return strconv.ParseBool(s)
	case oidInt2, oidInt4, oidInt8:
		return strconv.ParseInt(s, 10, 64)
	case oidFloat4, oidFloat8:
		return strconv.ParseFloat(s, 64)
	case oidNumeric:
		var n pgtype.Numeric
		if err := n.Scan(s); err != nil {
			return nil, fmt.Errorf("%s is not a number: %w", raw, err)
		}
		return n, nil
	case oidTimestamp, oidTimestamptz:
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, fmt.Errorf("%s is not an RFC 3339 time: %w", raw, err)
		}
		return t, nil
	}
	return nil, fmt.Errorf("type %d cannot take a JSON field", oid)
}
