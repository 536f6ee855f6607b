package builtin

import (
	"context"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/plugins/sdk"
)

func rec(key, value string, headers ...string) engine.Record {
	r := engine.Record{Topic: "t", Partition: 1, Offset: 9, Value: []byte(value)}
	if key != "" {
		r.Key = []byte(key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Headers = append(r.Headers, engine.Header{Key: headers[i], Value: []byte(headers[i+1])})
	}
	return r
}

func TestBuiltins(t *testing.T) {
	tests := []struct {
		name     string
		plugin   string
		settings map[string]any
		in       []engine.Record
		want     []string // key=value of outputs
		rejected []string // reasons
	}{
		{"uppercase", "uppercase", nil, []engine.Record{rec("k", "héllo wörld")}, []string{"k=HÉLLO WÖRLD"}, nil},
		{"filter on value", "filter", map[string]any{"expr": `value contains "err"`},
			[]engine.Record{rec("a", "an error"), rec("b", "fine")}, []string{"a=an error"}, nil},
		{"filter on key and headers", "filter", map[string]any{"expr": `key == "a" && headers["env"] == "prod"`},
			[]engine.Record{rec("a", "1", "env", "prod"), rec("a", "2", "env", "dev"), rec("b", "3", "env", "prod")}, []string{"a=1"}, nil},
		{"filter on JSON", "filter", map[string]any{"expr": `fromJSON(value).n > 1`},
			[]engine.Record{rec("", `{"n":1}`), rec("", `{"n":2}`), rec("", `nope`)}, []string{`={"n":2}`}, []string{"filter expression"}},
		{"filter on position", "filter", map[string]any{"expr": `topic == "t" && partition == 1 && offset == 9`},
			[]engine.Record{rec("", "x")}, []string{"=x"}, nil},
		{"extract fields", "extract", map[string]any{"fields": []string{"user.id", "tags.1"}},
			[]engine.Record{rec("", `{"user":{"id":42,"n":"x"},"tags":["a","b"]}`)}, []string{`={"tags.1":"b","user.id":42}`}, nil},
		{"extract unwrap and key", "extract", map[string]any{"fields": []string{"event"}, "unwrap": true, "key": "user.id"},
			[]engine.Record{rec("", `{"user":{"id":"u7"},"event":"click"}`)}, []string{"u7=click"}, nil},
		{"extract rejects", "extract", map[string]any{"fields": []string{"a"}},
			[]engine.Record{rec("", `not json`), rec("", `{"b":1}`)}, nil, []string{"value is not JSON", "field a is missing"}},
		{"extract missing as null", "extract", map[string]any{"fields": []string{"a"}, "missing": "null"},
			[]engine.Record{rec("", `{"b":1}`)}, []string{`={"a":null}`}, nil},
		{"split words", "split", nil, []engine.Record{rec("k", " to  be\tor ")}, []string{"k=to", "k=be", "k=or"}, nil},
		{"split delimiter", "split", map[string]any{"delimiter": ","}, []engine.Record{rec("", "a,,b")}, []string{"=a", "=b"}, nil},
		{"split keep empty", "split", map[string]any{"delimiter": ",", "keep-empty": true}, []engine.Record{rec("", "a,,b")}, []string{"=a", "=", "=b"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := Lookup(tt.plugin)
			if !ok {
				t.Fatalf("no built-in %s", tt.plugin)
			}
			tr, err := sdk.Local(context.Background(), p, tt.plugin, tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			out, rej, err := tr.Process(context.Background(), tt.in)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range out {
				got = append(got, string(r.Key)+"="+string(r.Value))
				if r.Topic != "t" || r.Offset != 9 {
					t.Errorf("output lost its source position: %+v", r)
				}
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("out %q, want %q", got, tt.want)
			}
			if len(rej) != len(tt.rejected) {
				t.Fatalf("rejected %v, want reasons %q", rej, tt.rejected)
			}
			for i, r := range rej {
				if !strings.Contains(r.Reason, tt.rejected[i]) {
					t.Errorf("reason %q, want %q", r.Reason, tt.rejected[i])
				}
			}
		})
	}
}

func TestSettingsErrors(t *testing.T) {
	tests := []struct {
		plugin   string
		settings map[string]any
		want     string
	}{
		{"uppercase", map[string]any{"x": 1}, `unknown key "x"`},
		{"filter", nil, "expr is required"},
		{"filter", map[string]any{"expr": `value +`}, "expr:"},
		{"filter", map[string]any{"expr": `len(value)`}, "expr:"},
		{"filter", map[string]any{"expression": "true"}, `unknown key "expression"; known keys: expr`},
		{"extract", nil, "fields is required"},
		{"extract", map[string]any{"fields": "a"}, "fields is string, want a list"},
		{"extract", map[string]any{"fields": []string{"a", "b"}, "unwrap": true}, "exactly one field"},
		{"extract", map[string]any{"fields": []string{"a"}, "missing": "skip"}, "not reject or null"},
		{"split", map[string]any{"delimiter": 1}, "delimiter is number, want a string"},
	}
	for _, tt := range tests {
		t.Run(tt.plugin+" "+tt.want, func(t *testing.T) {
			p, _ := Lookup(tt.plugin)
			_, err := sdk.Local(context.Background(), p, tt.plugin, tt.settings)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNames(t *testing.T) {
	if got := strings.Join(Names(), ","); got != "extract,filter,split,uppercase" {
		t.Fatalf("Names() = %s", got)
	}
	if _, ok := Lookup("nope"); ok {
		t.Fatal("Lookup found a plugin that does not exist")
	}
}
