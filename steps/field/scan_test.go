package field

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// oracle is what Lookup must agree with: encoding/json's decoding, then a
// walk of the maps and lists.
func oracle(data []byte, p Path) (any, bool, bool) {
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, false, false
	}
	v, ok := p.Lookup(doc)
	return v, ok, true
}

func TestLookupAgreesWithEncodingJSON(t *testing.T) {
	for _, tc := range []struct{ doc, path string }{
		{`{"a": 1}`, "a"},
		{`{"a": {"b": [10, {"c": "x"}]}}`, "a.b.1.c"},
		{`{"a": {"b": [10, {"c": "x"}]}}`, "a.b.2"},
		{`{"a": {"b": [10, {"c": "x"}]}}`, "a.b.01"},
		{`{"a": 1, "a": 2}`, "a"},
		{`{"a\u0062": "\u00e9t\u00e9"}`, "ab"},
		{` { "n" : -0.5e+3 , "t": true, "f": false, "z": null } `, "n"},
		{`{"t": true}`, "t"},
		{`{"z": null}`, "z"},
		{`{"s": "caf\u00e9 \"q\""}`, "s"},
		{`{"o": {"k": [1, "2"]}}`, "o"},
		{`[1, 2, 3]`, "2"},
		{`"scalar"`, "a"},
		{`{"a": 1}`, "b"},
		{`{"a": "ünï"}`, "a"},
	} {
		want, wantOK, _ := oracle([]byte(tc.doc), strings.Split(tc.path, "."))
		got, ok, err := NewDoc([]byte(tc.doc)).Lookup(strings.Split(tc.path, "."))
		if err != nil || ok != wantOK || !reflect.DeepEqual(got, want) {
			t.Errorf("%s at %s: got %#v %v %v, want %#v %v", tc.doc, tc.path, got, ok, err, want, wantOK)
		}
	}
}

func TestLookupRefusesWhatItReads(t *testing.T) {
	for _, doc := range []string{`not json`, `{"a": tru}`, `{"a": 01}`, `{"a": "x`, "{\"a\": \"\x01\"}", `{"a" 1}`, `{"b": [1,}`, `{"a": 1.}`, `{"a": -}`, `{"a": "\q"}`} {
		if _, _, err := NewDoc([]byte(doc)).Lookup(Path{"a"}); err == nil || !strings.HasPrefix(err.Error(), "value is not JSON") {
			t.Errorf("%q: got %v, want a not-JSON error", doc, err)
		}
	}
	deep := strings.Repeat("[", maxScanDepth+10)
	if _, _, err := NewDoc([]byte(`{"x": ` + deep + `, "a": 1}`)).Lookup(Path{"a"}); err == nil {
		t.Error("a value nested past maxScanDepth was skipped")
	}
}

// FuzzLookup: on valid JSON, Lookup finds what encoding/json finds; on
// anything, it does not panic.
func FuzzLookup(f *testing.F) {
	for _, s := range []string{`{"a": 1}`, `{"a": {"b": [1, {"c": "x"}]}}`, `{"a": 1, "a": "\u00e9"}`, `[1, [2], {"0": 3}]`, `{"a": -1.5e-3}`, `{"a": "x\"y"}`} {
		f.Add([]byte(s), "a")
		f.Add([]byte(s), "a.b.1.c")
		f.Add([]byte(s), "1.0")
	}
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		p, err := ParsePath(path)
		if err != nil {
			return
		}
		got, ok, err := NewDoc(data).Lookup(p)
		want, wantOK, valid := oracle(data, p)
		if !valid {
			return
		}
		if err != nil {
			// encoding/json refuses float64 overflow only when it decodes
			// the number, as Lookup does; anything else is a disagreement.
			if !strings.Contains(err.Error(), "number") {
				t.Fatalf("valid JSON %q at %s: %v", data, path, err)
			}
			return
		}
		if ok != wantOK || !reflect.DeepEqual(got, want) {
			t.Fatalf("%q at %s: got %#v %v, want %#v %v", data, path, got, ok, want, wantOK)
		}
	})
}
