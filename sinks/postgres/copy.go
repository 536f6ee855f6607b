package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sluicehq/sluice/engine"
)

// The sink writes rows as PostgreSQL's binary COPY stream ("Binary Format"
// in the COPY documentation) itself, instead of through pgx's CopyFrom,
// which costs an []any per row and an encode-plan lookup per value: most of
// the sink's CPU at Kafka rates. Each column's encoding is fixed at Open
// from its source and type; a table with any column not listed in
// planEncoding keeps pgx's CopyFrom, whose conversions (a string parsed as
// a uuid, say) are not repeated here.

// encoding is how the binary COPY writer fills one column.
type encoding uint8

const (
	encNone        encoding = iota // not here: the table's rows go through pgx
	encKey                         // the key's bytes; jsonb gets its version byte
	encValue                       // the value's bytes, likewise
	encTopic                       // the topic's UTF-8 bytes
	encPartition                   // an integer of the column's width
	encOffset                      // likewise
	encTimestamptz                 // microseconds since 2000-01-01 UTC
	encTimestamp                   // the same for the wall clock, as pgx does
	encField                       // a JSON field, converted by fromJSON
)

// planEncoding chooses c's encoding for its type (c.oid); m is the
// connection's type map, which pgx's CopyFrom would use.
func (c *column) planEncoding(m *pgtype.Map) {
	c.enc, c.numeric = encNone, nil
	// The bytes as they are: bytea and the JSON types take them so in pgx
	// too, and pgx sends the text types a string of them, whose binary
	// form is its bytes (the server checks the encoding).
	takesBytes := isText(c.oid) || c.oid == oidBytea || c.oid == oidJSON || c.oid == oidJSONB
	isInt := c.oid == oidInt2 || c.oid == oidInt4 || c.oid == oidInt8
	switch c.part {
	case partKey:
		if takesBytes {
			c.enc = encKey
		}
	case partValue:
		if takesBytes {
			c.enc = encValue
		}
	case partTopic:
		if isText(c.oid) {
			c.enc = encTopic
		}
	case partPartition:
		if isInt {
			c.enc = encPartition
		}
	case partOffset:
		if isInt {
			c.enc = encOffset
		}
	case partTimestamp:
		switch c.oid {
		case oidTimestamptz:
			c.enc = encTimestamptz
		case oidTimestamp:
			c.enc = encTimestamp
		}
	default:
		// checkType admitted only types appendValue encodes. Numeric's
		// base-10000 digits are left to pgx's own encoder, planned once.
		if c.oid == oidNumeric {
			if c.numeric = m.PlanEncode(oidNumeric, pgtype.BinaryFormatCode, pgtype.Numeric{}); c.numeric == nil {
				return
			}
		}
		c.enc = encField
	}
}

func isText(oid uint32) bool { return oid == oidText || oid == oidVarchar || oid == oidBPChar }

const (
	// copyChunk is how many encoded bytes the writer prepares at a time.
	// pgconn sends each Read as one CopyData message from a 64 KiB buffer,
	// so a chunk fills about one message, and it bounds the writer's
	// memory whatever the batch's size.
	copyChunk = 64 << 10
	// borrowMin: field payloads at least this long are not copied into the
	// chunk but read straight from the record's memory, so a large value
	// costs no extra copy and no buffer of its size. Below it, copying is
	// cheaper than tracking the slice.
	borrowMin = 4 << 10
	// maxField is the largest payload the format's int32 length can frame
	// (PostgreSQL itself refuses fields over 1 GB with its own error).
	maxField = math.MaxInt32

	// PostgreSQL stores timestamps as microseconds since 2000-01-01 UTC.
	pgEpochUnix = 946684800
	// The timestamps it accepts, in Unix seconds: from 4714-11-24 00:00 UTC
	// BC up to, not including, 294277-01-01 00:00 UTC (MIN_TIMESTAMP and
	// END_TIMESTAMP in its datatype/timestamp.h). Checking them here also
	// keeps the microseconds from overflowing into the int64s that mean
	// -infinity and infinity.
	pgMinUnix = -210866803200
	pgEndUnix = 9224318016000
)

// copySignature opens every binary COPY stream: the signature, flags 0 and
// a header extension of 0 bytes.
var copySignature = []byte("PGCOPY\n\377\r\n\000\000\000\000\000\000\000\000\000")

// copyTrailer ends the stream: a tuple whose field count is -1.
var copyTrailer = []byte{0xff, 0xff}

// borrowed is a payload that goes into the stream at buf offset at,
// without having been copied there.
type borrowed struct {
	at   int
	data []byte
}

// errCopyClosed is what Read returns once Write has stopped waiting for it.
var errCopyClosed = errors.New("postgres sink: the COPY stream is closed")

// copyReader is one Write's binary COPY stream, encoded on demand as
// pgconn's CopyFrom reads it: a chunk of rows at a time, so memory stays a
// chunk and the largest row's small fields, never the batch.
//
// pgconn reads in a goroutine of its own and, when the connection fails,
// can return before that goroutine has finished a Read. Write calls close
// once CopyFrom has returned: mu makes close wait for a Read under way and
// every later Read fail, so no Read touches the records after Write
// returns.
type copyReader struct {
	mu     sync.Mutex
	closed bool

	b      rowBuilder // the columns, and the decoded value shared by a row's JSON fields
	recs   []engine.Record
	next   int    // the next record to encode
	fields uint16 // fields per tuple
	seq    *int64 // upsert: the staged row counter, for the sequence column
	upsert bool

	started bool // the signature is encoded
	done    bool // the trailer is encoded
	buf     []byte
	off     int        // buf[:off] has been read
	segs    []borrowed // in order of at
	si      int        // segs[:si] have been read
	pending int        // bytes in the chunk, borrowed ones included

	err error // the record that could not be encoded; nil if none
}

// newCopyReader streams recs into cols (plus the sequence column when seq
// is set); buf and segs are reused storage, handed back by close.
func newCopyReader(cols []column, recs []engine.Record, seq *int64, buf []byte, segs []borrowed) *copyReader {
	r := &copyReader{b: rowBuilder{cols: cols}, recs: recs, fields: uint16(len(cols)), seq: seq, upsert: seq != nil,
		buf: buf[:0], segs: segs[:0]}
	if r.upsert {
		r.fields++
	}
	return r
}

// close stops the stream and returns its buffers for reuse, cleared of
// references to the records.
func (r *copyReader) close() ([]byte, []borrowed) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	clear(r.segs)
	r.b.obj = nil
	buf, segs := r.buf[:0], r.segs[:0]
	r.buf, r.segs, r.recs = nil, nil, nil
	return buf, segs
}

// Read fills p with the stream's next bytes, encoding more rows as needed.
func (r *copyReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, errCopyClosed
	}
	n := 0
	for n < len(p) {
		end := len(r.buf)
		if r.si < len(r.segs) {
			end = r.segs[r.si].at
		}
		if r.off < end {
			c := copy(p[n:], r.buf[r.off:end])
			r.off += c
			n += c
			continue
		}
		if r.si < len(r.segs) {
			s := &r.segs[r.si]
			c := copy(p[n:], s.data)
			s.data = s.data[c:]
			n += c
			if len(s.data) == 0 {
				s.data = nil
				r.si++
			}
			continue
		}
		if r.done {
			if n == 0 {
				return 0, io.EOF
			}
			break
		}
		if err := r.fill(); err != nil {
			r.err = err
			return n, err
		}
	}
	return n, nil
}

// fill encodes the next chunk of rows, after everything before it was read.
func (r *copyReader) fill() error {
	clear(r.segs)
	r.buf, r.off, r.segs, r.si, r.pending = r.buf[:0], 0, r.segs[:0], 0, 0
	if !r.started {
		r.buf = append(r.buf, copySignature...)
		r.started = true
	}
	for r.next < len(r.recs) && len(r.buf)+r.pending < copyChunk {
		if err := r.appendRow(&r.recs[r.next]); err != nil {
			return err
		}
		r.next++
	}
	if r.next == len(r.recs) {
		r.buf = append(r.buf, copyTrailer...)
		r.done = true
	}
	return nil
}

// appendRow encodes one tuple: the field count, then each field as its
// int32 length (-1 for NULL) and its bytes.
func (r *copyReader) appendRow(rec *engine.Record) error {
	r.b.obj = nil
	r.buf = binary.BigEndian.AppendUint16(r.buf, r.fields)
	for i := range r.b.cols {
		c := &r.b.cols[i]
		if err := r.appendColumn(c, rec); err != nil {
			return fmt.Errorf("record %s/%d@%d, column %s (%s): %w", rec.Topic, rec.Partition, rec.Offset, c.name, c.source(), err)
		}
	}
	if r.upsert {
		*r.seq++
		r.buf = binary.BigEndian.AppendUint32(r.buf, 8)
		r.buf = binary.BigEndian.AppendUint64(r.buf, uint64(*r.seq))
	}
	return nil
}

func (r *copyReader) appendColumn(c *column, rec *engine.Record) error {
	switch c.enc {
	case encKey:
		return r.appendBytes(rec.Key, c.oid == oidJSONB)
	case encValue:
		return r.appendBytes(rec.Value, c.oid == oidJSONB)
	case encTopic:
		r.appendString(rec.Topic)
	case encPartition:
		return r.appendInt(c, int64(rec.Partition))
	case encOffset:
		return r.appendInt(c, rec.Offset)
	case encTimestamptz, encTimestamp:
		if rec.Time.IsZero() {
			r.appendNull() // no timestamp
			return nil
		}
		return r.appendTime(rec.Time, c.enc == encTimestamp)
	case encField:
		raw, ok, err := r.b.field(c, rec)
		if err != nil {
			return err
		}
		if !ok {
			r.appendNull() // a missing field
			return nil
		}
		v, err := fromJSON(c.oid, raw)
		if err != nil {
			return err
		}
		return r.appendValue(c, v)
	default:
		return fmt.Errorf("column type %s has no binary COPY encoding here; this is a bug in the postgres sink, please report it", c.typ)
	}
	return nil
}

func (r *copyReader) appendNull() {
	r.buf = binary.BigEndian.AppendUint32(r.buf, math.MaxUint32) // int32 -1
}

// appendBytes encodes b, NULL if b is nil; jsonb's binary form is a
// version byte (1) and the JSON text.
func (r *copyReader) appendBytes(b []byte, jsonb bool) error {
	if b == nil {
		r.appendNull()
		return nil
	}
	n := len(b)
	if jsonb {
		n++
	}
	if n > maxField {
		return fmt.Errorf("%d bytes do not fit in one field; PostgreSQL takes at most 1 GB: split the record upstream", len(b))
	}
	r.buf = binary.BigEndian.AppendUint32(r.buf, uint32(n))
	if jsonb {
		r.buf = append(r.buf, 1)
	}
	if len(b) < borrowMin {
		r.buf = append(r.buf, b...)
		return nil
	}
	r.segs = append(r.segs, borrowed{at: len(r.buf), data: b})
	r.pending += len(b)
	return nil
}

// appendString encodes a text field: UTF-8 bytes, which the server checks.
func (r *copyReader) appendString(s string) {
	r.buf = binary.BigEndian.AppendUint32(r.buf, uint32(len(s)))
	r.buf = append(r.buf, s...)
}

// appendInt encodes v at the column's width, refusing what does not fit
// as pgx does.
func (r *copyReader) appendInt(c *column, v int64) error {
	switch c.oid {
	case oidInt2:
		if v < math.MinInt16 || v > math.MaxInt16 {
			return fmt.Errorf("%d does not fit in %s (-32768 to 32767); widen the column to integer or bigint", v, c.typ)
		}
		r.buf = binary.BigEndian.AppendUint32(r.buf, 2)
		r.buf = binary.BigEndian.AppendUint16(r.buf, uint16(v))
	case oidInt4:
		if v < math.MinInt32 || v > math.MaxInt32 {
			return fmt.Errorf("%d does not fit in %s (-2147483648 to 2147483647); widen the column to bigint", v, c.typ)
		}
		r.buf = binary.BigEndian.AppendUint32(r.buf, 4)
		r.buf = binary.BigEndian.AppendUint32(r.buf, uint32(v))
	default:
		r.buf = binary.BigEndian.AppendUint32(r.buf, 8)
		r.buf = binary.BigEndian.AppendUint64(r.buf, uint64(v))
	}
	return nil
}

// appendTime encodes t as timestamptz, or with wall as timestamp without
// time zone: t's wall clock in its own location, read as UTC, which is
// what pgx sends for a time.Time.
func (r *copyReader) appendTime(t time.Time, wall bool) error {
	sec := t.Unix()
	if wall {
		_, offset := t.Zone()
		sec += int64(offset)
	}
	if sec < pgMinUnix || sec >= pgEndUnix {
		return fmt.Errorf("time %s is outside PostgreSQL's range (4713 BC to 294276 AD)", t.Format(time.RFC3339Nano))
	}
	// Nanosecond is in [0, 1e9), so the division rounds down like the
	// seconds: times before 1970 and 2000 come out exact too.
	micros := (sec-pgEpochUnix)*1_000_000 + int64(t.Nanosecond()/1000)
	r.buf = binary.BigEndian.AppendUint32(r.buf, 8)
	r.buf = binary.BigEndian.AppendUint64(r.buf, uint64(micros))
	return nil
}

// appendValue encodes fromJSON's result for c's type, as pgx's encoder
// for that Go type and column type would.
func (r *copyReader) appendValue(c *column, v any) error {
	switch v := v.(type) {
	case nil:
		r.appendNull()
	case string:
		r.appendString(v)
	case []byte:
		return r.appendBytes(v, c.oid == oidJSONB)
	case bool:
		var b byte
		if v {
			b = 1
		}
		r.buf = binary.BigEndian.AppendUint32(r.buf, 1)
		r.buf = append(r.buf, b)
	case int64:
		return r.appendInt(c, v)
	case float64:
		if c.oid == oidFloat4 {
			// pgx narrows the same way: out of float4's range is ±Inf.
			r.buf = binary.BigEndian.AppendUint32(r.buf, 4)
			r.buf = binary.BigEndian.AppendUint32(r.buf, math.Float32bits(float32(v)))
			break
		}
		r.buf = binary.BigEndian.AppendUint32(r.buf, 8)
		r.buf = binary.BigEndian.AppendUint64(r.buf, math.Float64bits(v))
	case time.Time:
		return r.appendTime(v, c.oid == oidTimestamp)
	case pgtype.Numeric:
		at := len(r.buf)
		r.buf = binary.BigEndian.AppendUint32(r.buf, 0)
		out, err := c.numeric.Encode(v, r.buf)
		if err != nil {
			r.buf = r.buf[:at]
			return err
		}
		if out == nil { // pgx's NULL
			r.buf = r.buf[:at]
			r.appendNull()
			break
		}
		r.buf = out
		binary.BigEndian.PutUint32(r.buf[at:], uint32(len(r.buf)-at-4))
	default:
		return fmt.Errorf("a %T for column type %s has no binary COPY encoding here; this is a bug in the postgres sink, please report it", v, c.typ)
	}
	return nil
}
