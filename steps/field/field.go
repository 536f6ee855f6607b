// Package field reads what the stateful steps (aggregate, dedupe) take
// from a record: a key (the record key or a JSON field) and an event time
// (a JSON field or the record timestamp). It is shared so both steps name
// fields and times the same way.
package field

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// RecordKey and RecordValue are what a key setting is written as to mean
// the record key or the whole record value (a word after the split
// plugin) rather than a JSON field.
const (
	RecordKey   = "key"
	RecordValue = "value"
)

// Path is a dot-separated path into a JSON value ("user.id"; a number
// picks a list element: "items.0.sku").
type Path []string

// ParsePath checks and splits a path; the error says what to write.
func ParsePath(s string) (Path, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("is empty; write a dot-separated path into the JSON value, such as user.id")
	}
	p := strings.Split(s, ".")
	for _, seg := range p {
		if seg == "" {
			return nil, fmt.Errorf("%q has an empty segment; write dot-separated names, such as user.id", s)
		}
	}
	return p, nil
}

func (p Path) String() string { return strings.Join(p, ".") }

// Lookup walks p through decoded JSON (maps and lists).
func (p Path) Lookup(doc any) (any, bool) {
	for _, seg := range p {
		switch v := doc.(type) {
		case map[string]any:
			next, ok := v[seg]
			if !ok {
				return nil, false
			}
			doc = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(v) || strconv.Itoa(i) != seg {
				return nil, false
			}
			doc = v[i]
		default:
			return nil, false
		}
	}
	return doc, true
}

// Key is how a step picks a record's key: the record key, or a JSON field
// whose value becomes the key (a string without quotes, anything else as
// its JSON text).
type Key struct {
	path  Path // nil: the record key or value
	value bool // the record value
}

// ParseKey reads a key setting: "key", "value" or a JSON path.
func ParseKey(s string) (Key, error) {
	switch s {
	case RecordKey:
		return Key{}, nil
	case RecordValue:
		return Key{value: true}, nil
	}
	p, err := ParsePath(s)
	return Key{path: p}, err
}

// NeedsJSON reports whether the key is read from the value.
func (k Key) NeedsJSON() bool { return k.path != nil }

// Of returns r's key; doc is r's value.
func (k Key) Of(r *engine.Record, doc Doc) ([]byte, error) {
	switch {
	case k.value:
		return r.Value, nil
	case k.path == nil:
		return r.Key, nil
	}
	v, ok, err := doc.Lookup(k.path)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("key field %s is missing", k.path)
	}
	return Bytes(v), nil
}

// Bytes is a decoded JSON value as a key: a string's text, anything else
// its JSON encoding.
func Bytes(v any) []byte {
	if s, ok := v.(string); ok {
		return []byte(s)
	}
	b, _ := json.Marshal(v) // decoded JSON always encodes
	return b
}

// Time says where a record's time comes from: the clock (processing), a
// JSON field or the record timestamp (event).
type Time struct {
	Processing bool
	path       Path // event time from this field; nil = the record timestamp
}

// ParseTime reads the time and time-field settings ("event" or
// "processing"; a JSON path or "").
func ParseTime(mode, fieldPath string) (Time, error) {
	t := Time{Processing: mode == "processing"}
	if fieldPath != "" {
		p, err := ParsePath(fieldPath)
		if err != nil {
			return t, err
		}
		t.path = p
	}
	return t, nil
}

// NeedsJSON reports whether the time is read from the value.
func (t Time) NeedsJSON() bool { return !t.Processing && t.path != nil }

// Of returns r's event time in Unix nanoseconds (now for processing time).
// A field holds RFC 3339 text or epoch milliseconds.
func (t Time) Of(r *engine.Record, doc Doc, now time.Time) (int64, error) {
	switch {
	case t.Processing:
		return now.UnixNano(), nil
	case t.path == nil:
		if r.Time.IsZero() {
			return 0, errors.New("the record has no timestamp; set time-field to a JSON field holding the event time, or write time: processing")
		}
		return r.Time.UnixNano(), nil
	}
	v, ok, err := doc.Lookup(t.path)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("time field %s is missing", t.path)
	}
	switch v := v.(type) {
	case string:
		ts, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return 0, fmt.Errorf("time field %s: %q is not RFC 3339 time (2006-01-02T15:04:05Z) or epoch milliseconds", t.path, v)
		}
		return ts.UnixNano(), nil
	case float64:
		// Unix nanoseconds fit an int64 until the year 2262.
		if v != math.Trunc(v) || v < 0 || v > float64(maxEpochMillis) {
			return 0, fmt.Errorf("time field %s: %v is not whole epoch milliseconds between 1970 and 2262", t.path, v)
		}
		return int64(v) * int64(time.Millisecond), nil
	}
	return 0, fmt.Errorf("time field %s holds %s; write RFC 3339 text or epoch milliseconds", t.path, Bytes(v))
}

// maxEpochMillis is the latest epoch millisecond whose nanoseconds fit an
// int64 (April 2262): times are kept as Unix nanoseconds.
const maxEpochMillis = math.MaxInt64 / int64(time.Millisecond)
