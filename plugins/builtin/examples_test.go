package builtin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/plugins/sdk"
)

// TestExamplePipelines reads the transforms of each example pipeline of
// the built-ins and runs the input its comment shows through the chain,
// in-process. (The table of kinds would import this package through the
// plugin host; pipelines' TestExamplesAreValid lints the same files.)
func TestExamplePipelines(t *testing.T) {
	tests := []struct {
		file     string
		in       []string // key|value or value
		want     []string // key=value
		rejected int
	}{
		{"uppercase.yaml", []string{"hello", "world"}, []string{"=HELLO", "=WORLD"}, 0},
		{"filter.yaml", []string{`web|{"level":"error","env":"prod"}`, `web|{"level":"info","env":"prod"}`, "web|oops"},
			[]string{`web={"level":"error","env":"prod"}`}, 1},
		{"extract.yaml", []string{`{"user":{"id":"u7","name":"Ann"},"page":"/home","ts":1}`, `{"page":"/x"}`},
			[]string{`u7={"page":"/home","user.id":"u7"}`}, 1},
		{"split.yaml", []string{"to be or not to be", "that is the question"}, []string{"=that", "=question"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("..", "..", "examples", "plugins", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var spec struct {
				Transforms []struct {
					Plugin   string
					Settings map[string]any
				}
			}
			if err := yaml.Unmarshal(data, &spec); err != nil {
				t.Fatal(err)
			}
			var recs []engine.Record
			for i, line := range tt.in {
				r := engine.Record{Topic: "t", Offset: int64(i)}
				if k, v, ok := strings.Cut(line, "|"); ok {
					r.Key, r.Value = []byte(k), []byte(v)
				} else {
					r.Value = []byte(line)
				}
				recs = append(recs, r)
			}
			rejected := 0
			for _, step := range spec.Transforms {
				p, ok := Lookup(step.Plugin)
				if !ok {
					t.Fatalf("%s is not a built-in", step.Plugin)
				}
				tr, err := sdk.Local(context.Background(), p, step.Plugin, step.Settings)
				if err != nil {
					t.Fatal(err)
				}
				var rej []engine.Rejected
				recs, rej, err = tr.Process(context.Background(), recs)
				if err != nil {
					t.Fatal(err)
				}
				rejected += len(rej)
			}
			var got []string
			for _, r := range recs {
				got = append(got, string(r.Key)+"="+string(r.Value))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if rejected != tt.rejected {
				t.Errorf("%d rejected, want %d", rejected, tt.rejected)
			}
		})
	}
}
