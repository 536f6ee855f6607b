package aggregate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/steps/field"
)

// op is an aggregate function.
type op int

const (
	opCount op = iota
	opSum
	opMin
	opMax
	opAvg
	opCountDistinct
)

var opNames = map[string]op{"sum": opSum, "min": opMin, "max": opMax, "avg": opAvg, "count-distinct": opCountDistinct}

// function is one output field: its name, what it computes and from
// which field.
type function struct {
	name   string
	quoted []byte // name as a JSON string, for the output
	op     op
	path   field.Path // nil for count
	src    string     // as written, for messages
}

var errFunction = errors.New("write count, sum(FIELD), min(FIELD), max(FIELD), avg(FIELD) or count-distinct(FIELD), FIELD a dot-separated path into the JSON value")

// parseFunction reads "count" or "NAME(FIELD)".
func parseFunction(s string) (function, error) {
	s = strings.TrimSpace(s)
	if s == "count" || s == "count()" {
		return function{op: opCount, src: s}, nil
	}
	name, arg, ok := strings.Cut(s, "(")
	if !ok || !strings.HasSuffix(arg, ")") {
		return function{}, fmt.Errorf("%q is not a function; %w", s, errFunction)
	}
	o, known := opNames[strings.TrimSpace(name)]
	if !known {
		return function{}, fmt.Errorf("%q: no function %q; %w", s, name, errFunction)
	}
	arg = strings.TrimSpace(strings.TrimSuffix(arg, ")"))
	if arg == "" {
		return function{}, fmt.Errorf("%q names no field; write %s(FIELD), such as %s(amount)", s, name, name)
	}
	p, err := field.ParsePath(arg)
	if err != nil {
		return function{}, fmt.Errorf("%q: field %v", s, err)
	}
	return function{op: o, path: p, src: s}, nil
}

// An accumulator's state is a fixed-size slot of accSlot bytes per
// function: count and count-distinct keep an int64; sum a float64; min and
// max a float64 and whether any value came; avg the sum and the count.
const accSlot = 16

// input is what one record gives a function: a number, or a distinct
// value's bytes.
type input struct {
	num      float64
	distinct []byte
}

// read takes f's input from a decoded JSON value; the error is the
// record's rejection reason.
func (f *function) read(doc field.Doc) (input, error) {
	if f.op == opCount {
		return input{}, nil
	}
	v, ok, err := doc.Lookup(f.path)
	if err != nil {
		return input{}, err
	}
	if !ok {
		return input{}, fmt.Errorf("%s: field %s is missing", f.src, f.path)
	}
	if f.op == opCountDistinct {
		return input{distinct: distinctBytes(v)}, nil
	}
	n, ok := v.(float64)
	if !ok {
		return input{}, fmt.Errorf("%s: field %s holds %s, not a number", f.src, f.path, field.Bytes(v))
	}
	return input{num: n}, nil
}

// distinctBytes tells values of different JSON types apart ("1" and 1 are
// two values).
func distinctBytes(v any) []byte {
	switch v := v.(type) {
	case string:
		return append([]byte{'s'}, v...)
	case float64:
		return strconv.AppendFloat([]byte{'n'}, v, 'g', -1, 64)
	}
	return append([]byte{'j'}, field.Bytes(v)...)
}

// add folds in into slot. count-distinct is counted by the caller, which
// knows whether the value is new.
func (f *function) add(slot []byte, in input) {
	le := binary.LittleEndian
	switch f.op {
	case opCount, opCountDistinct:
		le.PutUint64(slot, le.Uint64(slot)+1)
	case opSum:
		le.PutUint64(slot, math.Float64bits(math.Float64frombits(le.Uint64(slot))+in.num))
	case opMin, opMax:
		cur, has := math.Float64frombits(le.Uint64(slot)), slot[8] == 1
		if !has || (f.op == opMin && in.num < cur) || (f.op == opMax && in.num > cur) {
			le.PutUint64(slot, math.Float64bits(in.num))
			slot[8] = 1
		}
	case opAvg:
		le.PutUint64(slot, math.Float64bits(math.Float64frombits(le.Uint64(slot))+in.num))
		le.PutUint64(slot[8:], le.Uint64(slot[8:])+1)
	}
}

// appendJSON writes slot's value as JSON.
func (f *function) appendJSON(b []byte, slot []byte) []byte {
	le := binary.LittleEndian
	switch f.op {
	case opCount, opCountDistinct:
		return strconv.AppendUint(b, le.Uint64(slot), 10)
	case opSum:
		return appendFloat(b, math.Float64frombits(le.Uint64(slot)))
	case opMin, opMax:
		if slot[8] != 1 {
			return append(b, "null"...)
		}
		return appendFloat(b, math.Float64frombits(le.Uint64(slot)))
	case opAvg:
		n := le.Uint64(slot[8:])
		if n == 0 {
			return append(b, "null"...)
		}
		return appendFloat(b, math.Float64frombits(le.Uint64(slot))/float64(n))
	}
	return append(b, "null"...)
}

// appendFloat writes a number as JSON does: whole numbers without a
// fraction or exponent up to 1e21, so sums of integers read as integers.
func appendFloat(b []byte, x float64) []byte {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return append(b, "null"...) // JSON has no infinity
	}
	if x == math.Trunc(x) && math.Abs(x) < 1e21 {
		return strconv.AppendFloat(b, x, 'f', -1, 64)
	}
	return strconv.AppendFloat(b, x, 'g', -1, 64)
}

// merge folds slot src (another window's) into dst: two sessions that a
// record joined become one.
func (f *function) merge(dst, src []byte) {
	le := binary.LittleEndian
	switch f.op {
	case opCount, opCountDistinct:
		le.PutUint64(dst, le.Uint64(dst)+le.Uint64(src))
	case opSum:
		le.PutUint64(dst, math.Float64bits(math.Float64frombits(le.Uint64(dst))+math.Float64frombits(le.Uint64(src))))
	case opMin, opMax:
		if src[8] == 1 {
			f.add(dst, input{num: math.Float64frombits(le.Uint64(src))})
		}
	case opAvg:
		le.PutUint64(dst, math.Float64bits(math.Float64frombits(le.Uint64(dst))+math.Float64frombits(le.Uint64(src))))
		le.PutUint64(dst[8:], le.Uint64(dst[8:])+le.Uint64(src[8:]))
	}
}

// count reads a count or count-distinct slot.
func count(slot []byte) uint64 { return binary.LittleEndian.Uint64(slot) }
