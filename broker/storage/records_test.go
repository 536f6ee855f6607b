package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// codecs are franz-go's compressors for Kafka's four codecs, by attribute.
var codecs = map[int16]kgo.CompressionCodec{
	1: kgo.GzipCompression(), 2: kgo.SnappyCompression(), 3: kgo.Lz4Compression(), 4: kgo.ZstdCompression(),
}

// withRecords rebuilds batch b around records recs with compression attrs
// codec and a fresh CRC, so that only what is inside is wrong.
func withRecords(b []byte, codec int16, recs []byte) []byte {
	out := append([]byte(nil), b[:batchHeaderLen]...)
	out = append(out, recs...)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-batchLengthOverhead))
	binary.BigEndian.PutUint16(out[21:], uint16(codec))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], castagnoli))
	return out
}

// compress returns b with its records compressed by franz-go's compressor.
func compress(t testing.TB, b []byte, codec int16) []byte {
	t.Helper()
	c, err := kgo.DefaultCompressor(codecs[codec])
	if err != nil {
		t.Fatal(err)
	}
	out, got := c.Compress(new(bytes.Buffer), b[batchHeaderLen:])
	if int16(got) != codec {
		t.Fatalf("compressed with codec %d, want %d", got, codec)
	}
	return withRecords(b, codec, out)
}

// withCount sets the header's record count and last offset delta.
func withCount(b []byte, count, lastDelta int32) []byte {
	out := append([]byte(nil), b...)
	binary.BigEndian.PutUint32(out[23:], uint32(lastDelta))
	binary.BigEndian.PutUint32(out[57:], uint32(count))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], castagnoli))
	return out
}

func gzipBytes(t testing.TB, raw []byte) []byte {
	c, _ := kgo.DefaultCompressor(kgo.GzipCompression())
	out, _ := c.Compress(new(bytes.Buffer), raw)
	return append([]byte(nil), out...)
}

func TestCheckRecords(t *testing.T) {
	good := makeBatch(1000, "a", "bb", "ccc")
	recs := good[batchHeaderLen:]
	// The second record starts after the first's length byte and body.
	second := 1 + int(recs[0]>>1)
	bomb := withRecords(good, 1, gzipBytes(t, make([]byte, inflateLimit(1<<20)+1)))
	cases := []struct {
		name  string
		batch []byte
		want  error  // nil: accepted
		msg   string // part of the error
	}{
		{"uncompressed", good, nil, ""},
		{"varint that never ends", withRecords(good, 0, append(append([]byte(nil), recs[:second]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)), ErrCorrupt, "record 1"},
		{"truncated record", withRecords(good, 0, recs[:len(recs)-2]), ErrCorrupt, "record 2"},
		{"fewer records than counted", withRecords(good, 0, recs[:second]), ErrCorrupt, "1 records where the header counts 3"},
		{"more bytes than records", withRecords(good, 0, append(append([]byte(nil), recs...), recs[:second]...)), ErrCorrupt, "after the 3 records"},
		{"key longer than the record", withRecords(good, 0, func() []byte {
			r := append([]byte(nil), recs...)
			r[4] = 0x7e // first record's key length: 63 instead of null
			return r
		}()), ErrCorrupt, "record 0: key"},
		{"count and offsets disagree", withCount(good, 2, 2), ErrInvalidRecord, "last offset delta"},
		{"bad gzip payload", withRecords(good, 1, []byte("not gzip at all, though the CRC is right")), ErrCorrupt, "gzip records do not decompress"},
		{"gzip that ends early", func() []byte {
			c := compress(t, good, 1)
			return withRecords(c, 1, c[batchHeaderLen:len(c)-6])
		}(), ErrCorrupt, "gzip"},
		{"unknown codec", withRecords(good, 5, recs), ErrCorrupt, "unknown compression codec 5"},
		{"decompression bomb", bomb, ErrTooLarge, "decompress to more than"},
	}
	for codec := range codecs {
		c := compress(t, good, codec)
		cases = append(cases, struct {
			name  string
			batch []byte
			want  error
			msg   string
		}{codecName(codec), c, nil, ""})
		cases = append(cases, struct {
			name  string
			batch []byte
			want  error
			msg   string
		}{codecName(codec) + " of a truncated record", compress(t, withRecords(good, 0, recs[:len(recs)-1]), codec), ErrCorrupt, "record 2"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := checkBatch(c.batch, true)
			if err != nil {
				t.Fatalf("header: %v", err)
			}
			if err == nil {
				err = checkClientBatch(h)
			}
			if err == nil {
				err = checkRecords(c.batch, h, inflateLimit(1<<20))
			}
			switch {
			case c.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != nil && !errors.Is(err, c.want):
				t.Fatalf("error %v, want %v", err, c.want)
			case c.want != nil && !strings.Contains(err.Error(), c.msg):
				t.Fatalf("error %q does not say %q", err, c.msg)
			}
		})
	}
}

// TestAppendRefusesMalformedRecords: nothing of a request with one bad
// batch is stored, and the log takes the next good one.
func TestAppendRefusesMalformedRecords(t *testing.T) {
	p, err := OpenPartition(t.TempDir(), quietConfig(Config{}), true)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	good := makeBatch(1000, "a", "b")
	bad := withRecords(good, 0, good[batchHeaderLen:len(good)-1])
	if _, _, err := p.Append(append(append([]byte(nil), good...), bad...), time.Now()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("append: %v, want ErrCorrupt", err)
	}
	if end := p.EndOffset(); end != 0 {
		t.Fatalf("end offset %d after a refused append", end)
	}
	if _, next, err := p.Append(good, time.Now()); err != nil || next != 2 {
		t.Fatalf("append good: next %d, %v", next, err)
	}
}

// FuzzCheckRecords feeds arbitrary records behind a valid header and CRC:
// the validator must not panic, and what it accepts franz-go must decode
// whole (every record the header counts).
func FuzzCheckRecords(f *testing.F) {
	good := makeBatch(1000, "a", "bb", "ccc")
	f.Add(int16(0), good[batchHeaderLen:])
	for codec := range codecs {
		c := compress(f, good, codec)
		f.Add(codec, c[batchHeaderLen:])
	}
	f.Add(int16(0), []byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, codec int16, recs []byte) {
		codec &= 0x7
		b := withRecords(good, codec, recs)
		h, err := checkBatch(b, true)
		if err != nil {
			t.Fatalf("header: %v", err)
		}
		err = checkRecords(b, h, 1<<20)
		if err != nil {
			return
		}
		// Accepted: decode it as a consumer would.
		raw := recs
		if codec != 0 {
			if raw, err = kgo.DefaultDecompressor().Decompress(recs, kgo.CompressionCodecType(codec)); err != nil {
				t.Fatalf("accepted, but franz-go cannot decompress it: %v", err)
			}
		}
		if n := countRecords(raw); n != int(h.recordCount) {
			t.Fatalf("accepted, but %d of %d records decode", n, h.recordCount)
		}
	})
}

// countRecords decodes records as franz-go's consumer does (length, then
// the fields), independently of walkRecords.
func countRecords(in []byte) int {
	n := 0
	for len(in) > 0 {
		l, used := binary.Varint(in)
		if used <= 0 || l < 0 || int64(len(in)-used) < l {
			return n
		}
		in = in[used+int(l):]
		n++
	}
	return n
}

// BenchmarkCheckRecords is the append's cost of decoding a produced batch
// of 2000 100-byte records (half random, half zeros), per codec.
func BenchmarkCheckRecords(b *testing.B) {
	raw := bigBatch(2000)
	for codec := range int16(5) {
		batch := raw
		if codec != 0 {
			batch = compress(b, raw, codec)
		}
		h := parseHeader(batch)
		b.Run(codecName(codec), func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for range b.N {
				if err := checkRecords(batch, h, 32<<20); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestInflateBudget: concurrent appends of compressed batches reserve their
// inflate limit from a process-wide budget, so small batches that inflate
// large cannot together make the broker hold more than maxInflatingBytes
// of decompressed records; the append past the budget waits, then succeeds.
func TestInflateBudget(t *testing.T) {
	p := openT(t, t.TempDir(), Config{MaxBatchBytes: 1 << 20}, true)
	per := int64(inflateLimit(1 << 20))
	capacity := int(maxInflatingBytes / per)
	var mu sync.Mutex
	var inflating, peak int64
	entered := make(chan struct{}, capacity+1)
	gate := make(chan struct{})
	testHookInflating = func(n int64) {
		mu.Lock()
		inflating += n
		peak = max(peak, inflating)
		mu.Unlock()
		if n > 0 {
			entered <- struct{}{}
			<-gate // hold the reservation until the budget was seen full
		}
	}
	t.Cleanup(func() { testHookInflating = nil })
	batch := compress(t, makeBatch(1000, "v"), 4)
	errs := make(chan error, capacity+1)
	var wg sync.WaitGroup
	for range capacity + 1 {
		wg.Go(func() {
			// A copy each: an append patches its batch's header in place
			// (base offset), as the broker does to the request it owns.
			_, err := p.AppendBatches(bytes.Clone(batch), time.Now())
			errs <- err
		})
	}
	for range capacity {
		<-entered
	}
	if inflateBudget.TryAcquire(1) {
		inflateBudget.Release(1)
		t.Fatalf("%d appends of %d-byte inflate limits left room in a %d-byte budget", capacity, per, maxInflatingBytes)
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	if peak > maxInflatingBytes {
		t.Fatalf("%d bytes reserved for decompression at once, over the %d budget", peak, maxInflatingBytes)
	}
	if n := len(entered); n != 1 {
		t.Fatalf("%d appends entered after the gate opened, want the one that waited", n)
	}
}
