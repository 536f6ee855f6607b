package repartition

import (
	"bytes"
	"context"
	"testing"

	"github.com/sluicehq/sluice/engine"
)

func rekey(key string) *Rekey { return NewRekey(Config{Repartition: Settings{Key: key}}) }

// The key is the field's text (a string without quotes, other values as
// JSON, long integers with every digit), the whole value, or the record
// key as it was; a record without the field is rejected with the reason.
func TestRekeyKeys(t *testing.T) {
	in := []engine.Record{
		{Key: []byte("k0"), Value: []byte(`{"user":{"id":"ann"},"n":12345678901234567,"tags":["a","b"]}`)},
		{Key: []byte("k1"), Value: []byte(`{"user":{"id":7}}`)},
		{Key: []byte("k2"), Value: []byte(`{"other":1}`)},
		{Key: []byte("k3"), Value: []byte(`hello`)},
	}
	for _, c := range []struct {
		key      string
		want     []string
		rejected int
	}{
		{"user.id", []string{"ann", "7"}, 2},
		{"n", []string{"12345678901234567"}, 3},
		{"tags.1", []string{"b"}, 3},
		{"user", []string{`{"id":"ann"}`, `{"id":7}`}, 2},
		{"value", []string{string(in[0].Value), string(in[1].Value), string(in[2].Value), "hello"}, 0},
		{"key", []string{"k0", "k1", "k2", "k3"}, 0},
	} {
		out, rej, err := rekey(c.key).Process(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range out {
			got = append(got, string(r.Key))
		}
		if len(got) != len(c.want) || len(rej) != c.rejected {
			t.Fatalf("by %s: keys %q, %d rejected; want %q, %d rejected", c.key, got, len(rej), c.want, c.rejected)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Fatalf("by %s: keys %q, want %q", c.key, got, c.want)
			}
		}
		for _, r := range rej {
			if r.Reason == "" || r.Plugin != "repartition" {
				t.Fatalf("rejection %+v says nothing", r)
			}
		}
	}
}

// Any value either gives a key or is rejected with a reason; the value
// itself is never changed.
func FuzzRekey(f *testing.F) {
	for _, s := range []string{`{"a":{"b":"x"}}`, `{"a":[1,{"b":2}]}`, `[]`, `"s"`, `{"a":`, "\xff", `{"a":{"b":1e400}}`} {
		f.Add("a.b", []byte(s))
		f.Add("a.1.b", []byte(s))
	}
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		if key == "" {
			return
		}
		orig := bytes.Clone(value)
		out, rej, err := rekey(key).Process(context.Background(), []engine.Record{{Value: value}})
		if err != nil || len(out)+len(rej) != 1 {
			t.Fatalf("%d out, %d rejected, err %v", len(out), len(rej), err)
		}
		if len(rej) == 1 && rej[0].Reason == "" {
			t.Fatal("rejected without a reason")
		}
		if !bytes.Equal(value, orig) {
			t.Fatal("the value changed")
		}
	})
}
