package wire

import (
	"bytes"
	"errors"
	"testing"
)

func appendWrites(ws []Write) []byte {
	b := AppendWriteCount(nil, len(ws))
	for _, w := range ws {
		b = AppendWrite(b, w)
	}
	return b
}

func decodeWrites(buf []byte) ([]Write, error) {
	var ws []Write
	err := DecodeWrites(buf, func(w Write) error {
		ws = append(ws, w)
		return nil
	})
	return ws, err
}

func TestWritesRoundTrip(t *testing.T) {
	in := []Write{
		{Task: 0, Key: []byte("a"), Value: []byte("1")},
		{Task: -5, Key: []byte{}, Value: []byte{}},
		{Task: 1<<31 - 1, Key: []byte("gone"), Delete: true},
	}
	got, err := decodeWrites(appendWrites(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("decoded %d writes, want %d", len(got), len(in))
	}
	for i := range in {
		if got[i].Task != in[i].Task || !bytes.Equal(got[i].Key, in[i].Key) || got[i].Delete != in[i].Delete ||
			!bytes.Equal(got[i].Value, in[i].Value) || (!in[i].Delete && got[i].Value == nil) {
			t.Errorf("write %d: got %+v, want %+v", i, got[i], in[i])
		}
	}
}

func TestValuesAndPairsRoundTrip(t *testing.T) {
	b := AppendValueCount(nil, 3)
	b = AppendValue(b, []byte("x"), true)
	b = AppendValue(b, nil, false)
	b = AppendValue(b, nil, true) // an empty value is found
	vs, err := DecodeValues(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 3 || string(vs[0].Data) != "x" || !vs[0].Found || vs[1].Found || !vs[2].Found || len(vs[2].Data) != 0 {
		t.Fatalf("values = %+v", vs)
	}
	p := AppendPairCount(nil, 2)
	p = AppendPair(p, []byte("k1"), []byte("v1"))
	p = AppendPair(p, []byte("k2"), nil)
	ps, err := DecodePairs(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || string(ps[0].Key) != "k1" || string(ps[0].Value) != "v1" || string(ps[1].Key) != "k2" || len(ps[1].Value) != 0 {
		t.Fatalf("pairs = %+v", ps)
	}
}

func TestStateDecodersRefuseCorrupt(t *testing.T) {
	good := appendWrites([]Write{{Task: 1, Key: []byte("key"), Value: []byte("value")}})
	for _, buf := range [][]byte{
		nil,
		good[:len(good)-1],
		append(append([]byte{}, good...), 0),
		{0xff, 0xff, 0xff, 0xff, 0x0f}, // a count far beyond the buffer
		{1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0}, // a task beyond int32
	} {
		if _, err := decodeWrites(buf); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodeWrites(%x) = %v, want ErrCorrupt", buf, err)
		}
		if len(buf) > 0 { // an empty buffer is not a value or pair list either, checked below
			continue
		}
		if _, err := DecodeValues(buf); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodeValues(%x) = %v, want ErrCorrupt", buf, err)
		}
		if _, err := DecodePairs(buf); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodePairs(%x) = %v, want ErrCorrupt", buf, err)
		}
	}
	if _, err := DecodeValues([]byte{2, 5, 'a'}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("DecodeValues of a truncated value = %v, want ErrCorrupt", err)
	}
	if _, err := DecodePairs([]byte{1, 1, 'k', 3, 'v'}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("DecodePairs of a truncated value = %v, want ErrCorrupt", err)
	}
}

// FuzzDecodeWrites feeds the decoder of what a plugin sends back with a
// Process reply (the host decodes it): it must refuse or decode, never
// panic, and what it decodes must encode back to the same writes.
func FuzzDecodeWrites(f *testing.F) {
	f.Add(appendWrites([]Write{{Task: 3, Key: []byte("k"), Value: []byte("v")}, {Task: 0, Key: []byte("d"), Delete: true}}))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, buf []byte) {
		ws, err := decodeWrites(buf)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := decodeWrites(appendWrites(ws))
		if err != nil || len(again) != len(ws) {
			t.Fatalf("re-encoded writes do not decode: %v", err)
		}
		for i := range ws {
			if again[i].Task != ws[i].Task || !bytes.Equal(again[i].Key, ws[i].Key) || again[i].Delete != ws[i].Delete || !bytes.Equal(again[i].Value, ws[i].Value) {
				t.Fatalf("write %d changed across a round trip", i)
			}
		}
	})
}

// FuzzDecodeStateReplies feeds the decoders of the host's answers (the SDK
// decodes them).
func FuzzDecodeStateReplies(f *testing.F) {
	f.Add(AppendValue(AppendValueCount(nil, 1), []byte("v"), true))
	f.Add(AppendPair(AppendPairCount(nil, 1), []byte("k"), []byte("v")))
	f.Fuzz(func(t *testing.T, buf []byte) {
		if vs, err := DecodeValues(buf); err == nil {
			b := AppendValueCount(nil, len(vs))
			for _, v := range vs {
				b = AppendValue(b, v.Data, v.Found)
			}
			again, err := DecodeValues(b)
			if err != nil || len(again) != len(vs) {
				t.Fatalf("re-encoded values do not decode: %v", err)
			}
			for i := range vs {
				if again[i].Found != vs[i].Found || !bytes.Equal(again[i].Data, vs[i].Data) {
					t.Fatalf("value %d changed across a round trip", i)
				}
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("DecodeValues error %v does not wrap ErrCorrupt", err)
		}
		if ps, err := DecodePairs(buf); err == nil {
			b := AppendPairCount(nil, len(ps))
			for _, p := range ps {
				b = AppendPair(b, p.Key, p.Value)
			}
			if again, err := DecodePairs(b); err != nil || len(again) != len(ps) {
				t.Fatalf("re-encoded pairs do not decode: %v", err)
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("DecodePairs error %v does not wrap ErrCorrupt", err)
		}
	})
}
