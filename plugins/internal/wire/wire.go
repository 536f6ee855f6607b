package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sluicehq/sluice/internal/record"
)

// maxTopics bounds the topic table a decoder accepts; real batches carry a
// handful of topics, so a larger count is a corrupt buffer.
const maxTopics = 1 << 16

// ErrCorrupt means a buffer is not a valid encoding.
var ErrCorrupt = errors.New("corrupt record encoding")

// Size returns an upper bound of the encoded size of recs, so callers can
// allocate once.
func Size(recs []record.Record) int {
	n := 2 * binary.MaxVarintLen64
	for i := range recs {
		n += RecordSize(&recs[i])
	}
	return n
}

// RecordSize is an upper bound of one record's share of an encoding,
// including its topic in case it is the first of its kind.
func RecordSize(r *record.Record) int {
	// Seven varints: topic index and partition (32-bit: 5 bytes at most),
	// offset, time, key and value lengths and header count (10 at most);
	// the topic's own entry is its length and bytes.
	n := 2*5 + 5*binary.MaxVarintLen64 + binary.MaxVarintLen64 + len(r.Topic) + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += 2*binary.MaxVarintLen64 + len(h.Key) + len(h.Value)
	}
	return n
}

// Append encodes recs onto dst and returns the extended slice.
func Append(dst []byte, recs []record.Record) []byte {
	// Most batches hold one topic; a linear scan beats a map there.
	var topics []string
	index := make([]uint32, len(recs))
	for i := range recs {
		t := recs[i].Topic
		j := 0
		for j < len(topics) && topics[j] != t {
			j++
		}
		if j == len(topics) {
			topics = append(topics, t)
		}
		index[i] = uint32(j)
	}
	dst = binary.AppendUvarint(dst, uint64(len(topics)))
	for _, t := range topics {
		dst = binary.AppendUvarint(dst, uint64(len(t)))
		dst = append(dst, t...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(recs)))
	for i := range recs {
		r := &recs[i]
		dst = binary.AppendUvarint(dst, uint64(index[i]))
		dst = binary.AppendVarint(dst, int64(r.Partition))
		dst = binary.AppendVarint(dst, r.Offset)
		var ns int64
		if !r.Time.IsZero() {
			ns = r.Time.UnixNano()
		}
		dst = binary.AppendVarint(dst, ns)
		dst = appendNullable(dst, r.Key)
		dst = appendNullable(dst, r.Value)
		dst = binary.AppendUvarint(dst, uint64(len(r.Headers)))
		for _, h := range r.Headers {
			dst = binary.AppendUvarint(dst, uint64(len(h.Key)))
			dst = append(dst, h.Key...)
			dst = appendNullable(dst, h.Value)
		}
	}
	return dst
}

func appendNullable(dst, b []byte) []byte {
	if b == nil {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b))+1)
	return append(dst, b...)
}

// Decode decodes a whole buffer written by Append. Keys, values and header
// values of the result alias buf: the caller must not modify buf afterwards.
func Decode(buf []byte) ([]record.Record, error) {
	return DecodeInto(nil, buf)
}

// DecodeInto is Decode reusing dst's storage when it is large enough.
func DecodeInto(dst []record.Record, buf []byte) ([]record.Record, error) {
	return DecodeAppend(dst[:0], buf)
}

// DecodeAppend decodes buf and appends the records to dst.
func DecodeAppend(dst []record.Record, buf []byte) ([]record.Record, error) {
	d := decoder{buf: buf}
	nt := d.uvarint()
	if nt > maxTopics {
		return nil, fmt.Errorf("%w: %d topics", ErrCorrupt, nt)
	}
	topics := make([]string, 0, nt)
	for range nt {
		topics = append(topics, string(d.bytes(d.uvarint())))
	}
	n := d.uvarint()
	// Every record takes at least 7 bytes, so a larger count is corrupt,
	// and this check keeps a bad count from allocating gigabytes.
	if d.err != nil || n > uint64(len(d.buf)-d.off)/7 {
		return nil, fmt.Errorf("%w: record count %d does not fit in %d bytes", ErrCorrupt, n, len(buf))
	}
	base := len(dst)
	dst = slices.Grow(dst, int(n))
	recs := dst[base : base+int(n)]
	for i := range recs {
		// Built in a local and stored once: one write of the record, not
		// one per field (each a write barrier while the GC runs).
		var r record.Record
		ti := d.uvarint()
		if ti >= uint64(len(topics)) {
			return nil, fmt.Errorf("%w: topic index %d of %d", ErrCorrupt, ti, len(topics))
		}
		r.Topic = topics[ti]
		r.Partition = int32(d.varint())
		r.Offset = d.varint()
		if ns := d.varint(); ns != 0 {
			r.Time = time.Unix(0, ns)
		}
		r.Key = d.nullable()
		r.Value = d.nullable()
		nh := d.uvarint()
		if nh > uint64(len(d.buf)-d.off)/2 {
			return nil, fmt.Errorf("%w: header count %d", ErrCorrupt, nh)
		}
		if nh > 0 {
			r.Headers = make([]record.Header, nh)
			for j := range r.Headers {
				r.Headers[j].Key = string(d.bytes(d.uvarint()))
				r.Headers[j].Value = d.nullable()
			}
		}
		if d.err != nil {
			return nil, d.err
		}
		recs[i] = r
	}
	if d.err != nil {
		return nil, d.err
	}
	if d.off != len(d.buf) {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.buf)-d.off)
	}
	return dst[:base+int(n)], nil
}

type decoder struct {
	buf []byte
	off int
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s at byte %d", ErrCorrupt, what, d.off)
	}
	d.off = len(d.buf)
}

func (d *decoder) uvarint() uint64 {
	// Lengths, indexes and counts are nearly always below 128: one byte.
	if d.off < len(d.buf) && d.buf[d.off] < 0x80 {
		v := d.buf[d.off]
		d.off++
		return uint64(v)
	}
	v, n := binary.Uvarint(d.buf[d.off:])
	if n <= 0 {
		d.fail("length")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.off < len(d.buf) && d.buf[d.off] < 0x80 {
		v := int64(d.buf[d.off])
		d.off++
		return v>>1 ^ -(v & 1) // zig-zag, as binary.Varint
	}
	v, n := binary.Varint(d.buf[d.off:])
	if n <= 0 {
		d.fail("integer")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if n > uint64(len(d.buf)-d.off) {
		d.fail("length")
		return nil
	}
	b := d.buf[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return b
}

func (d *decoder) nullable() []byte {
	n := d.uvarint()
	if n == 0 {
		return nil
	}
	return d.bytes(n - 1)
}
