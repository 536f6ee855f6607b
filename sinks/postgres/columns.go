package postgres

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
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
	cast *cast    // the type written after ::, or nil
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

// cast is a column's type as the pipeline wrote it (SOURCE::TYPE): the
// type create-table gives the column, and the one an existing column must
// have.
type cast struct {
	ddl string // as written, lower-cased: it goes into CREATE TABLE
	oid uint32
}

// castTypes are the types a cast may name, by their PostgreSQL names and
// aliases: the ones a JSON field converts into (fromJSON). Anything else
// is refused, so what goes into CREATE TABLE is one of these words.
var castTypes = map[string]uint32{
	"text": oidText, "varchar": oidVarchar, "character varying": oidVarchar,
	"smallint": oidInt2, "int2": oidInt2, "integer": oidInt4, "int": oidInt4, "int4": oidInt4,
	"bigint": oidInt8, "int8": oidInt8, "real": oidFloat4, "float4": oidFloat4,
	"double precision": oidFloat8, "float8": oidFloat8, "numeric": oidNumeric, "decimal": oidNumeric,
	"boolean": oidBool, "bool": oidBool, "json": oidJSON, "jsonb": oidJSONB, "bytea": oidBytea,
	"timestamptz": oidTimestamptz, "timestamp with time zone": oidTimestamptz,
	"timestamp": oidTimestamp, "timestamp without time zone": oidTimestamp,
}

// partCasts are the casts a record part takes: those the binary COPY
// writer encodes for it (planEncoding), so a cast never makes the sink
// slower or a row fail that the default type would have taken.
var partCasts = map[string][]uint32{
	partKey:       {oidBytea, oidText, oidVarchar, oidJSON, oidJSONB},
	partValue:     {oidBytea, oidText, oidVarchar, oidJSON, oidJSONB},
	partTopic:     {oidText, oidVarchar},
	partPartition: {oidInt4, oidInt8},
	partOffset:    {oidInt8},
	partTimestamp: {oidTimestamptz, oidTimestamp},
}

// typeModifier is the (N) or (P, S) a varchar or numeric may carry.
var typeModifier = regexp.MustCompile(`^\(\s*[0-9]{1,4}\s*(,\s*[0-9]{1,4}\s*)?\)$`)

// parseCast reads the TYPE of SOURCE::TYPE.
func parseCast(name, src, typ string) (*cast, error) {
	t := strings.Join(strings.Fields(strings.ToLower(typ)), " ")
	base, mod := t, ""
	if i := strings.IndexByte(t, '('); i >= 0 {
		base, mod = strings.TrimSpace(t[:i]), t[i:]
	}
	oid, ok := castTypes[base]
	if !ok || (mod != "" && (!typeModifier.MatchString(mod) || (oid != oidVarchar && oid != oidNumeric))) {
		return nil, fmt.Errorf("columns: %s: %q after :: is not a type a column can take here; write one of text, varchar, smallint, integer, bigint, real, double precision, numeric, numeric(P,S), boolean, json, jsonb, timestamptz, timestamp or bytea, e.g. %s::numeric", name, typ, src)
	}
	return &cast{ddl: t, oid: oid}, nil
}

// parseColumns turns the pipeline's columns block into columns sorted by
// name, so COPY column order is stable. A source may end in ::TYPE.
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
		src, typ, hasCast := strings.Cut(strings.TrimSpace(src), "::")
		src = strings.TrimSpace(src)
		switch src {
		case partKey, partValue, partTopic, partPartition, partOffset, partTimestamp:
			c.part = src
		default:
			rest, ok := strings.CutPrefix(src, "value.")
			if !ok || rest == "" || slices.Contains(strings.Split(rest, "."), "") {
				return nil, fmt.Errorf("columns: %s: %q is not a record part; write one of key, value, topic, partition, offset, timestamp, or a JSON field of the value such as value.user.id, optionally with a type: value.amount::numeric", name, src)
			}
			c.path = strings.Split(rest, ".")
		}
		if hasCast {
			ct, err := parseCast(name, src, typ)
			if err != nil {
				return nil, err
			}
			if ok := partCasts[c.part]; c.part != "" && !slices.Contains(ok, ct.oid) {
				return nil, fmt.Errorf("columns: %s: %s cannot be stored as %s; give %s one of: %s", name, src, ct.ddl, src, castNames(ok))
			}
			c.cast = ct
		}
		cols = append(cols, c)
	}
	slices.SortFunc(cols, func(a, b column) int { return strings.Compare(a.name, b.name) })
	return cols, nil
}

// castNames lists the first name of each type, for messages.
func castNames(oids []uint32) string {
	var names []string
	for _, oid := range oids {
		names = append(names, typeName[oid])
	}
	return strings.Join(names, ", ")
}

// typeName is the name messages use for a type.
var typeName = map[uint32]string{
	oidBool: "boolean", oidBytea: "bytea", oidInt2: "smallint", oidInt4: "integer", oidInt8: "bigint",
	oidText: "text", oidJSON: "json", oidFloat4: "real", oidFloat8: "double precision", oidVarchar: "varchar",
	oidTimestamp: "timestamp", oidTimestamptz: "timestamptz", oidNumeric: "numeric", oidJSONB: "jsonb",
}

// createType is the column type create-table uses for c: its cast, or
// else jsonb for a JSON field (it holds any JSON value) and the record
// part's own type.
func (c *column) createType() string {
	if c.cast != nil {
		return c.cast.ddl
	}
	if c.part == "" {
		return "jsonb"
	}
	return createTypes[c.part]
}

// checkCast rejects, at Open, a column whose type in the table is not the
// one its cast names: the cast says what the user expects the column to
// hold (a numeric for min()), and the table would silently hold another.
func (c *column) checkCast() error {
	if c.cast == nil || c.cast.oid == c.oid {
		return nil
	}
	return fmt.Errorf("column %s is %s in the table, but columns gives it %s::%s; change the column's type (ALTER TABLE ... ALTER COLUMN %s TYPE %s) or the cast",
		c.name, c.typ, c.source(), c.cast.ddl, c.name, c.cast.ddl)
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
