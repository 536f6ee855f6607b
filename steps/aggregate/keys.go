package aggregate

import (
	"encoding/binary"
	"errors"
	"math"
)

// State layout, per task, in the step's namespace (byte order is the order
// a Scan walks):
//
//	'a' key start      → end, latest time, one accSlot per function: a window's accumulator
//	'c' end key start  → 0: the close index, scanned up to the watermark
//	'm'                → newest event time seen: the watermark's base
//
// and in the namespace ns+"/distinct":
//
//	key start fn value → 0: one distinct value of a count-distinct
//
// key is the aggregation key prefixed by its length (uvarint), so one key's
// entries are a prefix of their own; times are Unix nanoseconds as
// big-endian with the sign bit flipped, so byte order is time order.
const (
	tagAcc   = 'a'
	tagClose = 'c'
	tagMeta  = 'm'
)

// present is the value of an entry whose key says everything.
var present = []byte{0}

var metaKey = []byte{tagMeta}

var errCorrupt = errors.New("aggregate: a state entry is not in this sluice's format; the state was written by another step or version")

func appendTime(b []byte, t int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(t)^(1<<63))
}

func readTime(b []byte) int64 { return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)) }

func appendKey(b, k []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(k))), k...)
}

// readKey splits a length-prefixed key off b.
func readKey(b []byte) (k, rest []byte, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return nil, nil, errCorrupt
	}
	return b[w : w+int(n)], b[w+int(n):], nil
}

// accKey is 'a' key start; accPrefix the part shared by one key's windows.
func accKey(k []byte, start int64) []byte { return appendTime(accPrefix(k), start) }

func accPrefix(k []byte) []byte { return appendKey([]byte{tagAcc}, k) }

func closeKey(end int64, k []byte, start int64) []byte {
	return appendTime(appendKey(appendTime([]byte{tagClose}, end), k), start)
}

// parseClose reads a close index key.
func parseClose(b []byte) (end int64, k []byte, start int64, err error) {
	if len(b) < 1+8 || b[0] != tagClose {
		return 0, nil, 0, errCorrupt
	}
	end = readTime(b[1:])
	k, rest, err := readKey(b[9:])
	if err != nil || len(rest) != 8 {
		return 0, nil, 0, errCorrupt
	}
	return end, k, readTime(rest), nil
}

// distinctPrefix is the part of a distinct entry's key shared by one
// window; distinctKey adds the function and the value.
func distinctPrefix(k []byte, start int64) []byte { return appendTime(appendKey(nil, k), start) }

func distinctKey(prefix []byte, fn int, v []byte) []byte {
	b := make([]byte, 0, len(prefix)+1+len(v))
	return append(append(append(b, prefix...), byte(fn)), v...)
}

// prefixEnd returns the first key after every key starting with p, for a
// Scan's to (nil: none, p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// acc is a window's accumulator: its end, the newest time folded into it,
// and one slot per function.
type acc []byte

const accHeader = 16

func newAcc(end int64, fns int) acc {
	a := make(acc, accHeader+fns*accSlot)
	binary.BigEndian.PutUint64(a, uint64(end))
	a.setLatest(math.MinInt64)
	return a
}

func (a acc) end() int64        { return int64(binary.BigEndian.Uint64(a)) }
func (a acc) latest() int64     { return int64(binary.BigEndian.Uint64(a[8:])) }
func (a acc) slot(i int) []byte { return a[accHeader+i*accSlot : accHeader+(i+1)*accSlot] }
func (a acc) valid(fns int) bool {
	return len(a) == accHeader+fns*accSlot
}
func (a acc) clone() acc                { return append(acc(nil), a...) }
func (a acc) window(start int64) window { return window{start: start, end: a.end()} }

// seen notes that a record of time t went into the window.
func (a acc) seen(t int64) { binary.BigEndian.PutUint64(a[8:], uint64(max(a.latest(), t))) }

func (a acc) setLatest(t int64) { binary.BigEndian.PutUint64(a[8:], uint64(t)) }
