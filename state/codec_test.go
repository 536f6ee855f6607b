package state

import (
	"bytes"
	"testing"
)

func TestChangeRoundTrip(t *testing.T) {
	for _, c := range []logChange{
		{epoch: 1, value: []byte("v")},
		{epoch: 1 << 40, deleted: true, hasPrev: true, prev: []byte("old")},
		{epoch: 7, value: []byte{}, hasPrev: true, prev: []byte{}},
	} {
		got, err := decodeChange(encodeChange(nil, c))
		if err != nil || got.epoch != c.epoch || got.deleted != c.deleted || got.hasPrev != c.hasPrev ||
			!bytes.Equal(got.value, c.value) || !bytes.Equal(got.prev, c.prev) {
			t.Fatalf("%+v: decoded %+v, %v", c, got, err)
		}
	}
	ns, key, err := splitKey(storeKey(nil, "agg", []byte("k\x00")))
	if err != nil || ns != "agg" || string(key) != "k\x00" {
		t.Fatalf("splitKey: %q %q %v", ns, key, err)
	}
}

// FuzzDecodeChange: changelog values come from a Kafka topic anyone with
// access can write to; decoding must never panic, and what decodes encodes
// back to the same bytes.
func FuzzDecodeChange(f *testing.F) {
	f.Add(encodeChange(nil, logChange{epoch: 3, value: []byte("v"), hasPrev: true, prev: []byte("p")}))
	f.Add(encodeChange(nil, logChange{epoch: 1, deleted: true}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0})
	f.Add([]byte{1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeChange(b)
		if err != nil {
			return
		}
		if again := encodeChange(nil, c); !bytes.Equal(again, b) {
			// Varints have more than one encoding; only the canonical one
			// must come back the same, and it must decode to the same change.
			c2, err := decodeChange(again)
			if err != nil || c2.epoch != c.epoch || !bytes.Equal(c2.value, c.value) || !bytes.Equal(c2.prev, c.prev) {
				t.Fatalf("%x decoded to %+v, which encodes to %x (%+v, %v)", b, c, again, c2, err)
			}
		}
		splitKey(b)
	})
}
