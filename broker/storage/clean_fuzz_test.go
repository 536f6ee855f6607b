package storage

import (
	"encoding/binary"
	"hash/crc32"
	"testing"
	"time"
)

// FuzzCleanBatch runs the cleaner's record decoding and rebuilding on a
// batch whose header and CRC are sound but whose records are arbitrary
// bytes (a stored batch the cleaner reads): it must not panic, and a batch
// it rebuilds must be one a consumer decodes (CheckFetched).
func FuzzCleanBatch(f *testing.F) {
	seed := keyedBatch(1000, kv{"a", val("1")}, kv{"b", nil}, kv{"a", val("2")})
	f.Add(seed[batchHeaderLen:], uint8(3), uint8(0))
	f.Add(compress(f, seed, 1)[batchHeaderLen:], uint8(3), uint8(1))
	f.Add(compress(f, seed, 4)[batchHeaderLen:], uint8(3), uint8(4))
	f.Add([]byte{0x02, 0x00}, uint8(1), uint8(0))
	f.Fuzz(func(t *testing.T, recs []byte, count, codec uint8) {
		if count == 0 {
			return // checkHeader refuses it before any record is read
		}
		b := make([]byte, batchHeaderLen, batchHeaderLen+len(recs))
		copy(b, seed[:batchHeaderLen])
		b = append(b, recs...)
		binary.BigEndian.PutUint32(b[8:], uint32(len(b)-batchLengthOverhead))
		binary.BigEndian.PutUint16(b[21:], uint16(codec%5))
		binary.BigEndian.PutUint32(b[23:], uint32(count)-1)
		binary.BigEndian.PutUint32(b[57:], uint32(count))
		binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
		h, err := checkBatch(b, true)
		if err != nil {
			t.Fatalf("built batch refused: %v", err)
		}
		m := newOffsetMap(1 << 10)
		m.reset()
		m.put([]byte("a"), 2)
		pl := &cleanPlan{cfg: Config{DeleteRetention: time.Hour}, state: cleanerState{firstDirty: 1 << 40, spans: []cleanSpan{{0, 0}}}}
		rw := &rewriter{pl: pl, m: m, mapEnd: 1 << 40, aborted: abortedSet{}, o: &CleanOptions{}, st: &CleanStats{},
			txnData: map[int64]bool{}, nowMs: time.Hour.Milliseconds() * 2}
		out, _, err := rw.filter(h, b)
		if err != nil || out == nil || &out[0] == &b[0] {
			return
		}
		if _, _, err := CheckFetched(out); err != nil {
			t.Fatalf("rebuilt batch does not decode: %v", err)
		}
	})
}
