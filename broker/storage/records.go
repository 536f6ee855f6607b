package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"golang.org/x/sync/semaphore"
)

// checkRecords decodes every record of the client batch b, whose header h
// checkBatch accepted, as Kafka's LogValidator does before it appends: a
// batch whose CRC is right may still hold records no consumer can decode
// (a varint that never ends, a length past the batch, a payload that does
// not decompress), and a reader would stop at them for good. Compressed
// records are decompressed into a pooled buffer, at most limit bytes.
// Nothing is allocated per record.
func checkRecords(b []byte, h header, limit int) error { return checkRecordsOf(b, h, limit, false) }

// checkRecordsOf is checkRecords that with needKey also refuses a record
// without a key, as Kafka does on a compacted topic.
func checkRecordsOf(b []byte, h header, limit int, needKey bool) error {
	if h.attributes&0x7 != 0 {
		// A compressed batch may take limit bytes however small it is, so
		// the request budgets do not bound it: the process-wide inflate
		// budget does.
		n := int64(min(limit, maxInflatingBytes))
		inflateBudget.Acquire(context.Background(), n) // cannot fail: never cancelled
		defer inflateBudget.Release(n)
		if h := testHookInflating; h != nil {
			h(n)
			defer h(-n)
		}
	}
	return decodeRecords(b, h, limit, true, needKey, nil)
}

// inflateBudget bounds the bytes appends may be decompressing at once
// (maxInflatingBytes), each reserving its batch's inflate limit.
var inflateBudget = semaphore.NewWeighted(maxInflatingBytes)

// testHookInflating, when set, is told of each reservation of inflateBudget
// (n > 0) and its release (n < 0).
var testHookInflating func(n int64)

// decodeRecords decompresses the records of batch b (header h) within
// limit bytes and walks them (walkRecords), calling fn, if not nil, with
// each.
func decodeRecords(b []byte, h header, limit int, sequential, needKey bool, fn func(rawRecord) error) error {
	recs := b[batchHeaderLen:h.size()]
	if codec := h.attributes & 0x7; codec != 0 {
		in := inflaters.Get().(*inflater)
		defer in.put()
		out, err := in.inflate(codec, recs, limit)
		if err != nil {
			return err
		}
		recs = out
	}
	return walkRecords(recs, h.recordCount, sequential, needKey, fn)
}

// CheckFetched checks the record batch at the start of b (which may hold
// more) as a consumer decodes it: header, CRC-32C, and every record,
// decompressed within the largest bound an append allows. Unlike an
// append it takes control batches and gaps in offset deltas (compaction).
// It returns the batch's first and last offset; a consumer uses it to tell
// a batch no client can decode from a partition that is merely slow.
func CheckFetched(b []byte) (first, last int64, err error) {
	h, err := checkBatch(b, true)
	if err != nil {
		if len(b) >= batchHeaderLen && h.lastOffsetDelta >= 0 {
			return h.baseOffset, h.nextOffset() - 1, err
		}
		return h.baseOffset, -1, err
	}
	first, last = h.baseOffset, h.nextOffset()-1
	return first, last, decodeRecords(b, h, maxUncompressedBatchBytes, false, false, nil)
}

// walkRecords checks that in holds exactly count magic v2 records, each
// decoding to its own length and, if sequential, numbered by offset delta
// 0, 1, …; fn, if not nil, is called with each checked record (its slices
// valid during the call only).
func walkRecords(in []byte, count int32, sequential, needKey bool, fn func(rawRecord) error) error {
	for i := range count {
		length, n := varint(in)
		if n <= 0 || length < 0 || length > int64(len(in)-n) {
			if len(in) == 0 {
				return fmt.Errorf("%w: %d records where the header counts %d", ErrCorrupt, i, count)
			}
			return fmt.Errorf("%w: record %d: its length does not decode or runs past the batch", ErrCorrupt, i)
		}
		raw := in[:n+int(length)]
		in = in[n+int(length):]
		if err := walkRecord(raw[n:], i, sequential, needKey); err != nil {
			return err
		}
		if fn != nil {
			if err := fn(fieldsOf(raw, n)); err != nil {
				return err
			}
		}
	}
	if len(in) > 0 {
		return fmt.Errorf("%w: %d bytes after the %d records the header counts", ErrCorrupt, len(in), count)
	}
	return nil
}

// rawRecord is one record as walkRecords hands it to its caller.
type rawRecord struct {
	raw       []byte // the length varint and the record, as stored
	delta     int64  // offset delta
	key       []byte // nil when keyNull
	keyNull   bool
	valueNull bool
}

// fieldsOf reads the offset delta, key and value nullness of the record
// raw, whose length varint is n bytes and which walkRecord checked: no
// bound needs checking again. Only callers that want the fields pay for it,
// not every append.
func fieldsOf(raw []byte, n int) rawRecord {
	rec := rawRecord{raw: raw}
	r := raw[n+1:] // attributes
	_, n = varint(r)
	r = r[n:] // timestamp delta
	rec.delta, n = varint(r)
	r = r[n:]
	kl, n := varint(r)
	r = r[n:]
	if kl < 0 {
		rec.keyNull = true
	} else {
		rec.key, r = r[:kl], r[kl:]
	}
	vl, _ := varint(r)
	rec.valueNull = vl < 0
	return rec
}

// walkRecord checks one record's fields within its length r.
func walkRecord(r []byte, i int32, sequential, needKey bool) error {
	bad := func(what string) error {
		return fmt.Errorf("%w: record %d: %s does not decode within the record's length", ErrCorrupt, i, what)
	}
	if len(r) < 1 {
		return bad("attributes")
	}
	r = r[1:]
	if _, n := varint(r); n <= 0 {
		return bad("timestamp delta")
	} else {
		r = r[n:]
	}
	delta, n := varint(r)
	if n <= 0 || n > maxVarint32Len {
		return bad("offset delta")
	}
	if sequential && delta != int64(i) {
		return fmt.Errorf("%w: record %d has offset delta %d; a producer numbers a batch's records 0, 1, 2, …", ErrInvalidRecord, i, delta)
	}
	r = r[n:]
	if needKey {
		if kl, n := varint(r); n > 0 && kl < 0 {
			return fmt.Errorf("%w: Compacted topic cannot accept message without key (record %d): give every record a key, or produce to a topic whose cleanup.policy is delete", ErrInvalidRecord, i)
		}
	}
	var ok bool
	if r, ok = skipBytes(r, true); !ok {
		return bad("key")
	}
	if r, ok = skipBytes(r, true); !ok {
		return bad("value")
	}
	headers, n := varint(r)
	if n <= 0 || n > maxVarint32Len || headers < 0 {
		return bad("header count")
	}
	r = r[n:]
	for range headers {
		if r, ok = skipBytes(r, false); !ok {
			return bad("header key")
		}
		if r, ok = skipBytes(r, true); !ok {
			return bad("header value")
		}
	}
	if len(r) > 0 {
		return fmt.Errorf("%w: record %d: %d bytes after its headers", ErrCorrupt, i, len(r))
	}
	return nil
}

// maxVarint32Len is the longest encoding of a 32-bit zigzag varint, as
// Kafka reads lengths, counts and offset deltas.
const maxVarint32Len = 5

// skipBytes skips a varint length and that many bytes; -1 (null) is allowed
// when nullable.
func skipBytes(r []byte, nullable bool) ([]byte, bool) {
	l, n := varint(r)
	switch {
	case n <= 0 || n > maxVarint32Len:
		return r, false
	case l == -1 && nullable:
		return r[n:], true
	case l < 0 || l > int64(len(r)-n):
		return r, false
	}
	return r[n+int(l):], true
}

// varint reads a zigzag varint: n is 0 if b ends inside it and negative if
// it overflows 64 bits. One and two bytes (deltas, and lengths below 8 KiB)
// are inlined.
func varint(b []byte) (int64, int) {
	if len(b) > 0 && b[0] < 0x80 {
		return int64(b[0]>>1) ^ -int64(b[0]&1), 1
	}
	if len(b) > 1 && b[1] < 0x80 {
		u := uint64(b[0]&0x7f) | uint64(b[1])<<7
		return int64(u>>1) ^ -int64(u&1), 2
	}
	return binary.Varint(b)
}

// inflater decompresses one batch's records into a buffer it keeps; the
// readers are kept too, so a compressed append allocates nothing once warm.
type inflater struct {
	out  bytes.Buffer
	src  bytes.Reader
	lim  io.LimitedReader
	gz   gzip.Reader
	lz   *lz4.Reader
	zstd *zstd.Decoder
}

var inflaters = sync.Pool{New: func() any { return new(inflater) }}

func (in *inflater) put() {
	if in.out.Cap() > maxPooledInflateBytes {
		in.out = bytes.Buffer{}
	}
	in.out.Reset()
	in.src.Reset(nil)
	inflaters.Put(in)
}

// maxPooledInflateBytes: a buffer grown past this by a rare large batch is
// dropped rather than kept in the pool.
const maxPooledInflateBytes = 4 << 20

// errInflateLimit marks output past the limit: a decompression bomb, or a
// batch larger than the broker keeps.
var errInflateLimit = errors.New("decompressed records exceed the limit")

func (in *inflater) inflate(codec int16, src []byte, limit int) ([]byte, error) {
	var err error
	switch codec {
	case 1:
		in.src.Reset(src)
		if err = in.gz.Reset(&in.src); err == nil {
			in.gz.Multistream(true)
			err = in.readAll(&in.gz, limit)
		}
	case 2:
		err = in.unsnappy(src, limit)
	case 3:
		in.src.Reset(src)
		if in.lz == nil {
			in.lz = lz4.NewReader(&in.src)
		} else {
			in.lz.Reset(&in.src)
		}
		err = in.readAll(in.lz, limit)
	case 4:
		in.src.Reset(src)
		if in.zstd == nil {
			// Synchronous (one goroutine) and low-memory; the decoder
			// is closed when the pool drops its inflater.
			d, derr := zstd.NewReader(&in.src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxMemory(maxUncompressedBatchBytes))
			if derr != nil {
				return nil, derr
			}
			in.zstd = d
			runtime.AddCleanup(in, func(d *zstd.Decoder) { d.Close() }, d)
		} else if err = in.zstd.Reset(&in.src); err != nil {
			break
		}
		err = in.readAll(in.zstd, limit)
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
			err = errInflateLimit
		}
	default:
		return nil, fmt.Errorf("%w: unknown compression codec %d (Kafka has 1 gzip, 2 snappy, 3 lz4, 4 zstd)", ErrCorrupt, codec)
	}
	switch {
	case errors.Is(err, errInflateLimit):
		return nil, fmt.Errorf("%w: the %s records decompress to more than %d bytes (%d times the topic's max.message.bytes)", ErrTooLarge, codecName(codec), limit, maxInflation)
	case err != nil:
		return nil, fmt.Errorf("%w: the %s records do not decompress: %v", ErrCorrupt, codecName(codec), err)
	}
	return in.out.Bytes(), nil
}

func codecName(codec int16) string {
	return [...]string{"uncompressed", "gzip", "snappy", "lz4", "zstd"}[codec]
}

// readAll reads r to its end into in.out, failing past limit bytes.
func (in *inflater) readAll(r io.Reader, limit int) error {
	in.out.Reset()
	in.lim.R, in.lim.N = r, int64(limit)+1
	_, err := in.out.ReadFrom(&in.lim)
	in.lim.R = nil
	if err == nil && in.out.Len() > limit {
		err = errInflateLimit
	}
	return err
}

// xerialMagic starts snappy in the framing of Kafka's Java client (blocks
// of a big-endian length and a raw snappy block after a 16-byte header);
// other clients send one raw snappy block.
var xerialMagic = []byte{130, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

func (in *inflater) unsnappy(src []byte, limit int) error {
	in.out.Reset()
	if len(src) < 16 || !bytes.HasPrefix(src, xerialMagic) {
		return in.unsnappyBlock(src, limit)
	}
	for src = src[16:]; len(src) > 0; {
		if len(src) < 4 {
			return errors.New("truncated xerial block length")
		}
		size := binary.BigEndian.Uint32(src)
		src = src[4:]
		if uint64(size) > uint64(len(src)) {
			return errors.New("xerial block runs past the batch")
		}
		if err := in.unsnappyBlock(src[:size], limit); err != nil {
			return err
		}
		src = src[size:]
	}
	return nil
}

// unsnappyBlock appends one raw snappy block to in.out; its decoded length
// is checked against what limit leaves before anything is allocated.
func (in *inflater) unsnappyBlock(src []byte, limit int) error {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return err
	}
	if n > limit-in.out.Len() {
		return errInflateLimit
	}
	in.out.Grow(n)
	dst := in.out.AvailableBuffer()[:n]
	if _, err := s2.Decode(dst, src); err != nil {
		return err
	}
	in.out.Write(dst) // dst is the buffer's own spare room: copies onto itself
	return nil
}

// inflateLimit is how large a compressed batch of a partition whose
// max.message.bytes is maxBatch may decompress to.
func inflateLimit(maxBatch int64) int {
	if maxBatch <= 0 {
		maxBatch = maxBatchBytes
	}
	return int(min(maxBatch*maxInflation, maxUncompressedBatchBytes, math.MaxInt32))
}
