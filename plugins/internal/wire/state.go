package wire

import (
	"encoding/binary"
	"fmt"
)

// The keyed-state encodings of the plugin protocol (stateful steps). Like
// records, each is one buffer of varints and bytes:
//
//	writes   count, then per write: task (signed), key (length+bytes),
//	         value (length+1 then bytes; 0 = delete the key)
//	values   count, then per value: length+1 then bytes; 0 = no such key
//	pairs    count, then per pair: key (length+bytes), value (length+bytes)
//
// Decoded keys and values alias the buffer.

// Write is one state change of a task: Put when Delete is false.
type Write struct {
	Task   int32
	Key    []byte
	Value  []byte
	Delete bool
}

// Value is one answer of a state lookup.
type Value struct {
	Data  []byte
	Found bool
}

// Pair is one key and its value, as a scan returns them.
type Pair struct {
	Key, Value []byte
}

// WriteSize is an upper bound of w's share of a write list.
func WriteSize(w *Write) int {
	return 3*binary.MaxVarintLen64 + len(w.Key) + len(w.Value)
}

// AppendWriteCount starts a write list of n writes; AppendWrite appends
// each. Two calls, so that a writer need not gather its writes in a slice.
func AppendWriteCount(dst []byte, n int) []byte {
	return binary.AppendUvarint(dst, uint64(n))
}

// AppendWrite appends one write of a list started by AppendWriteCount.
func AppendWrite(dst []byte, w Write) []byte {
	dst = binary.AppendVarint(dst, int64(w.Task))
	dst = binary.AppendUvarint(dst, uint64(len(w.Key)))
	dst = append(dst, w.Key...)
	if w.Delete {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(w.Value))+1)
	return append(dst, w.Value...)
}

// DecodeWrites decodes a write list and calls fn for each write in order,
// stopping at fn's first error. A corrupt buffer is an error wrapping
// ErrCorrupt; fn may have been called for the writes before the fault, so
// a caller that must apply all or nothing checks first (fn returning nil).
func DecodeWrites(buf []byte, fn func(Write) error) error {
	d := decoder{buf: buf}
	n := d.uvarint()
	// A write takes at least 3 bytes (task, key length, value marker).
	if d.err != nil || n > uint64(len(d.buf)-d.off)/3 {
		return fmt.Errorf("%w: write count %d does not fit in %d bytes", ErrCorrupt, n, len(buf))
	}
	for range n {
		var w Write
		task := d.varint()
		if task < -1<<31 || task > 1<<31-1 {
			d.fail("task")
		}
		w.Task = int32(task)
		w.Key = d.bytes(d.uvarint())
		v := d.uvarint()
		if v == 0 {
			w.Delete = true
		} else {
			w.Value = d.bytes(v - 1)
		}
		if d.err != nil {
			return d.err
		}
		if err := fn(w); err != nil {
			return err
		}
	}
	if d.off != len(d.buf) {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.buf)-d.off)
	}
	return nil
}

// AppendValueCount starts a value list of n values.
func AppendValueCount(dst []byte, n int) []byte {
	return binary.AppendUvarint(dst, uint64(n))
}

// AppendValue appends one value of a value list.
func AppendValue(dst, v []byte, found bool) []byte {
	if !found {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(v))+1)
	return append(dst, v...)
}

// DecodeValues decodes a value list.
func DecodeValues(buf []byte) ([]Value, error) {
	d := decoder{buf: buf}
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.buf)-d.off) {
		return nil, fmt.Errorf("%w: value count %d does not fit in %d bytes", ErrCorrupt, n, len(buf))
	}
	vs := make([]Value, n)
	for i := range vs {
		if m := d.uvarint(); m > 0 {
			vs[i] = Value{Data: d.bytes(m - 1), Found: true}
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if d.off != len(d.buf) {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.buf)-d.off)
	}
	return vs, nil
}

// PairSize is an upper bound of one pair's share of a pair list.
func PairSize(key, value []byte) int {
	return 2*binary.MaxVarintLen64 + len(key) + len(value)
}

// AppendPairCount starts a pair list of n pairs.
func AppendPairCount(dst []byte, n int) []byte {
	return binary.AppendUvarint(dst, uint64(n))
}

// AppendPair appends one pair of a pair list.
func AppendPair(dst, key, value []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = binary.AppendUvarint(dst, uint64(len(value)))
	return append(dst, value...)
}

// DecodePairs decodes a pair list.
func DecodePairs(buf []byte) ([]Pair, error) {
	d := decoder{buf: buf}
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.buf)-d.off)/2 {
		return nil, fmt.Errorf("%w: pair count %d does not fit in %d bytes", ErrCorrupt, n, len(buf))
	}
	ps := make([]Pair, n)
	for i := range ps {
		ps[i].Key = d.bytes(d.uvarint())
		ps[i].Value = d.bytes(d.uvarint())
	}
	if d.err != nil {
		return nil, d.err
	}
	if d.off != len(d.buf) {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.buf)-d.off)
	}
	return ps, nil
}
