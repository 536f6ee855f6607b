package wire

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/record"
)

func TestRoundTrip(t *testing.T) {
	ts := time.Unix(1700000000, 123456789)
	tests := []struct {
		name string
		recs []record.Record
	}{
		{"empty", nil},
		{"one", []record.Record{{Topic: "t", Partition: 3, Offset: 42, Key: []byte("k"), Value: []byte("v"), Time: ts}}},
		{"nil and empty bytes", []record.Record{{Topic: "t", Key: nil, Value: []byte{}}}},
		{"negative offset and partition", []record.Record{{Topic: "t", Partition: -1, Offset: -2}}},
		{"headers", []record.Record{{Topic: "t", Headers: []record.Header{{Key: "a", Value: []byte("1")}, {Key: "", Value: nil}}}}},
		{"many topics", []record.Record{{Topic: "a"}, {Topic: "b", Offset: 1}, {Topic: "a", Offset: 2}, {Topic: "", Offset: 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := Append(nil, tt.recs)
			if len(buf) > Size(tt.recs) {
				t.Errorf("encoded %d bytes, Size said at most %d", len(buf), Size(tt.recs))
			}
			got, err := Decode(buf)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.recs) {
				t.Fatalf("decoded %d records, want %d", len(got), len(tt.recs))
			}
			for i := range got {
				if !Equal(got[i], tt.recs[i]) {
					t.Errorf("record %d: got %+v, want %+v", i, got[i], tt.recs[i])
				}
			}
		})
	}
}

func TestDecodeCorrupt(t *testing.T) {
	good := Append(nil, []record.Record{{Topic: "t", Key: []byte("key"), Value: []byte("value")}})
	tests := []struct {
		name string
		buf  []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)-2]},
		{"trailing", append(append([]byte{}, good...), 0)},
		{"huge count", []byte{0, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"bad topic index", []byte{0, 1, 5, 0, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Decode(tt.buf); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode = %v, want ErrCorrupt", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Append(nil, []record.Record{{Topic: "t", Key: []byte("k"), Value: []byte("v"), Headers: []record.Header{{Key: "h"}}}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, buf []byte) {
		recs, err := Decode(buf)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to something that decodes the same.
		again, err := Decode(Append(nil, recs))
		if err != nil {
			t.Fatalf("re-encoding a decoded buffer does not decode: %v", err)
		}
		for i := range recs {
			if !Equal(recs[i], again[i]) {
				t.Fatalf("record %d changed across a round trip", i)
			}
		}
	})
}

// Equal compares two records field by field, keeping nil apart from empty.
func Equal(a, b record.Record) bool {
	if a.Topic != b.Topic || a.Partition != b.Partition || a.Offset != b.Offset || !a.Time.Equal(b.Time) {
		return false
	}
	if !nullableEqual(a.Key, b.Key) || !nullableEqual(a.Value, b.Value) || len(a.Headers) != len(b.Headers) {
		return false
	}
	for i := range a.Headers {
		if a.Headers[i].Key != b.Headers[i].Key || !nullableEqual(a.Headers[i].Value, b.Headers[i].Value) {
			return false
		}
	}
	return true
}

func nullableEqual(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}
