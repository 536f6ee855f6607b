package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/bits"
	"time"

	"github.com/sluicehq/sluice/engine"
)

const (
	headerBytes = 8
	// blockIndexEvery is the spacing of a block's entry index: reading from
	// the middle of a block walks at most this many entry headers.
	blockIndexEvery = 128
	// noTime encodes a record without a timestamp.
	noTime = math.MinInt64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errCorrupt = errors.New("wal: corrupt entry")

// Block is records encoded as log entries, ready to append: each record is
// encoded once, into the buffers that AppendBlock writes, and Records
// decodes them back from those same buffers, so a block appended to the
// log can be handed out from memory without reading the log. The records
// Records returns point into the block's buffers, which are never written
// again once an entry is in them. The zero value is an empty block; a Block
// is not safe for concurrent use while records are added.
//
// Entries go into chunks rather than one growing buffer: a buffer that
// grows by append is copied each time it grows (by a quarter, for large
// slices), which cost more than encoding. Grow sizes the next chunk for
// what is about to be added; an entry never spans two chunks.
type Block struct {
	chunks [][]byte
	n      int
	bytes  int
	index  []entryRef // entries 0, blockIndexEvery, 2*blockIndexEvery, ...
	// max is the highest offset per partition; run is the partition of the
	// latest records, whose highest offset is runMax, kept out of the map so
	// that a run of records from one partition costs no map operation each.
	max    engine.Positions
	run    engine.TopicPartition
	runMax int64
	inRun  bool
}

// entryRef is where an entry starts: chunk and byte position in it.
type entryRef struct {
	chunk, pos int32
}

// minChunkBytes is the smallest chunk a block allocates, so that records
// added one by one without Grow do not each get a chunk.
const minChunkBytes = 64 << 10

// Grow makes room for n more bytes of entries (EncodedSize of the records
// about to be added) in one chunk.
func (b *Block) Grow(n int) {
	k := len(b.chunks) - 1
	if k >= 0 && cap(b.chunks[k])-len(b.chunks[k]) >= n {
		return
	}
	c := make([]byte, 0, max(n, minChunkBytes))
	if k >= 0 && len(b.chunks[k]) == 0 {
		// Readers step from the end of one chunk to the start of the
		// next, so no chunk is left empty.
		b.chunks[k] = c
		return
	}
	b.chunks = append(b.chunks, c)
}

// Add appends r's entry. Nothing of r is retained: keys, values and headers
// are copied into the block.
func (b *Block) Add(r *engine.Record) {
	size := EncodedSize(r)
	k := len(b.chunks) - 1
	if k < 0 || cap(b.chunks[k])-len(b.chunks[k]) < size {
		b.chunks = append(b.chunks, make([]byte, 0, max(size, minChunkBytes)))
		k++
	}
	c := b.chunks[k]
	if b.n%blockIndexEvery == 0 {
		b.index = append(b.index, entryRef{chunk: int32(k), pos: int32(len(c))})
	}
	start := len(c)
	c = encode(append(c, make([]byte, headerBytes)...), r)
	body := c[start+headerBytes:]
	binary.BigEndian.PutUint32(c[start:], uint32(len(body)))
	binary.BigEndian.PutUint32(c[start+4:], crc32.Checksum(body, castagnoli))
	b.chunks[k] = c
	b.n++
	b.bytes += len(c) - start
	if b.inRun && r.Partition == b.run.Partition && r.Topic == b.run.Topic {
		b.runMax = max(b.runMax, r.Offset)
		return
	}
	b.endRun()
	b.run, b.runMax, b.inRun = engine.TopicPartition{Topic: r.Topic, Partition: r.Partition}, r.Offset, true
}

func (b *Block) endRun() {
	if !b.inRun {
		return
	}
	if b.max == nil {
		b.max = engine.Positions{}
	}
	if cur, ok := b.max[b.run]; !ok || b.runMax > cur {
		b.max[b.run] = b.runMax
	}
	b.inRun = false
}

// Len returns the number of entries in the block.
func (b *Block) Len() int { return b.n }

// Bytes returns the encoded size of the block's entries.
func (b *Block) Bytes() int { return b.bytes }

// MaxOffsets returns the highest Kafka offset per partition in the block.
// The block must not be added to afterwards.
func (b *Block) MaxOffsets() engine.Positions {
	b.endRun()
	return b.max
}

// Records appends to dst the records of entries i..i+n-1 (counting from 0
// in the block). They are decoded from the block's buffers and point into
// them. Records may be called concurrently with other calls of Records,
// not with Add.
func (b *Block) Records(dst []engine.Record, i, n int) ([]engine.Record, error) {
	if i < 0 || n < 0 || i+n > b.n {
		return dst, fmt.Errorf("wal: entries %d..%d of a block of %d", i, i+n, b.n)
	}
	at := b.index[i/blockIndexEvery]
	k, pos := int(at.chunk), int(at.pos)
	for range i % blockIndexEvery {
		pos += headerBytes + int(binary.BigEndian.Uint32(b.chunks[k][pos:]))
		if pos == len(b.chunks[k]) {
			k, pos = k+1, 0
		}
	}
	var d decoder
	for range n {
		c := b.chunks[k]
		size := int(binary.BigEndian.Uint32(c[pos:]))
		body := c[pos+headerBytes : pos+headerBytes+size]
		dst = append(dst, engine.Record{})
		if err := d.decode(body, &dst[len(dst)-1]); err != nil {
			return dst[:len(dst)-1], err
		}
		if pos += headerBytes + size; pos == len(c) {
			k, pos = k+1, 0
		}
	}
	return dst, nil
}

// EncodedSize returns the size of r's entry, header included.
func EncodedSize(r *engine.Record) int {
	t := int64(noTime)
	if !r.Time.IsZero() {
		t = r.Time.UnixNano()
	}
	n := headerBytes + stringSize(r.Topic) + varintSize(int64(r.Partition)) + varintSize(r.Offset) +
		varintSize(t) + bytesSize(r.Key) + bytesSize(r.Value) + uvarintSize(uint64(len(r.Headers)))
	for _, h := range r.Headers {
		n += stringSize(h.Key) + bytesSize(h.Value)
	}
	return n
}

func uvarintSize(v uint64) int {
	return (bits.Len64(v|1) + 6) / 7
}

func varintSize(v int64) int {
	// binary.AppendVarint's zig-zag encoding.
	return uvarintSize(uint64(v<<1) ^ uint64(v>>63))
}

func bytesSize(v []byte) int {
	if v == nil {
		return 1
	}
	return uvarintSize(uint64(len(v))+1) + len(v)
}

func stringSize(s string) int {
	return uvarintSize(uint64(len(s))+1) + len(s)
}

// encode appends r's wire form to b.
func encode(b []byte, r *engine.Record) []byte {
	b = appendString(b, r.Topic)
	b = binary.AppendVarint(b, int64(r.Partition))
	b = binary.AppendVarint(b, r.Offset)
	t := int64(noTime)
	if !r.Time.IsZero() {
		t = r.Time.UnixNano()
	}
	b = binary.AppendVarint(b, t)
	b = appendBytes(b, r.Key)
	b = appendBytes(b, r.Value)
	b = binary.AppendUvarint(b, uint64(len(r.Headers)))
	for _, h := range r.Headers {
		b = appendString(b, h.Key)
		b = appendBytes(b, h.Value)
	}
	return b
}

// appendBytes writes a length (0 = nil, n+1 = n bytes) and the bytes.
func appendBytes(b, v []byte) []byte {
	if v == nil {
		return binary.AppendUvarint(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	return append(b, v...)
}

// appendString is appendBytes for a string, which is never nil; the
// encoding of "" matches the empty non-nil slice that earlier versions
// wrote.
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s))+1)
	return append(b, s...)
}

// decoder decodes entries one after another without allocating per
// record: the records of one topic share one string, header keys seen
// recently are reused, and headers are cut from a shared slab.
type decoder struct {
	b     []byte
	err   error
	topic string
	keys  [headerKeysKept]string // recent header keys, most recent at next-1
	next  int
	slab  []engine.Header // headers not yet given to a record
}

const (
	// headerKeysKept is how many distinct header keys the decoder reuses
	// strings of: records usually carry the same few keys.
	headerKeysKept = 8
	// headerSlab is how many headers one allocation holds.
	headerSlab = 256
)

// key returns b as a string, reusing one of the recent keys if equal.
func (d *decoder) key(b []byte) string {
	for i := range d.keys {
		if k := d.keys[(d.next-1-i+2*headerKeysKept)%headerKeysKept]; k == string(b) {
			return k
		}
	}
	k := string(b)
	d.keys[d.next%headerKeysKept] = k
	d.next++
	return k
}

// headers returns n headers for one record: a capped part of the slab.
func (d *decoder) headers(n int) []engine.Header {
	if len(d.slab) < n {
		d.slab = make([]engine.Header, max(n, headerSlab))
	}
	h := d.slab[:n:n]
	d.slab = d.slab[n:]
	return h
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes returns the next length-prefixed bytes as a slice of the entry,
// capped so that appending to it cannot overwrite what follows.
func (d *decoder) bytes() []byte {
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > uint64(len(d.b)-n)+1 {
		d.err = errCorrupt
		return nil
	}
	d.b = d.b[n:]
	if v == 0 {
		return nil
	}
	out := d.b[: v-1 : v-1]
	d.b = d.b[v-1:]
	return out
}

// decode decodes body into r; r's key, value and header values point into
// body.
func (d *decoder) decode(body []byte, r *engine.Record) error {
	d.b, d.err = body, nil
	if t := d.bytes(); string(t) != d.topic {
		d.topic = string(t)
	}
	r.Topic = d.topic
	r.Partition = int32(d.varint())
	r.Offset = d.varint()
	r.Time = time.Time{}
	if t := d.varint(); t != noTime {
		r.Time = time.Unix(0, t)
	}
	r.Key = d.bytes()
	r.Value = d.bytes()
	nh, n := binary.Uvarint(d.b)
	if n <= 0 || nh > uint64(len(d.b)) {
		return errCorrupt
	}
	d.b = d.b[n:]
	r.Headers = nil
	if nh > 0 {
		r.Headers = d.headers(int(nh))
		for i := range r.Headers {
			k := d.key(d.bytes())
			r.Headers[i] = engine.Header{Key: k, Value: d.bytes()}
		}
	}
	return d.err
}

// decode decodes one entry body on its own.
func decode(body []byte) (engine.Record, error) {
	var d decoder
	var r engine.Record
	err := d.decode(body, &r)
	return r, err
}
