package dedupe_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/components"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/steps/dedupe"
)

func pipelineWith(step string, extra ...string) []byte {
	lines := append([]string{"version: 1", "name: d", "source: {generate: {count: 10}}", "sink: {file: {path: ./out}}"}, extra...)
	lines = append(lines, "transforms:", "  - dedupe: "+step)
	return []byte(strings.Join(lines, "\n") + "\n")
}

// TestLint: the shape is accepted; each mistake is one line at
// its place saying what to write.
func TestLint(t *testing.T) {
	s, err := components.Builtin.Parse("t.yaml", pipelineWith("{key: FIELD, within: 10m}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := s.Transforms[0].Config.(*dedupe.Step).Dedupe; d.Key != "FIELD" || d.Within.D().String() != "10m0s" || d.Time != "event" {
		t.Fatalf("decoded %+v", d)
	}
	for _, tc := range []struct {
		name, step string
		extra      []string
		at, want   string
	}{
		{"no within", "{key: id}", nil, "{key", `missing required key "within" in transforms[0].dedupe; add within: 10m`},
		{"tiny within", "{key: id, within: 1ns}", nil, "1ns", "transforms[0].dedupe.within is 1ns; write a duration between 1ms and 8784h0m0s, such as within: 10m"},
		{"bad key", "{key: a..b, within: 1m}", nil, "a..b", `transforms[0].dedupe.key "a..b" has an empty segment`},
		{"time-field with processing", "{key: id, within: 1m, time: processing, time-field: ts}", nil, "time-field", "reads event time, and time is processing"},
		{"not exactly once", "{key: id, within: 1m}", []string{"delivery: at-least-once"}, "dedupe", "the dedupe step keeps state that commits with the sink's output, which takes delivery: exactly-once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := pipelineWith(tc.step, tc.extra...)
			_, err := components.Builtin.Parse("t.yaml", data, nil)
			var errs pipelines.Errors
			if !errors.As(err, &errs) || len(errs) != 1 {
				t.Fatalf("got %v, want one lint error", err)
			}
			e := errs[0]
			if !strings.Contains(e.Msg, tc.want) {
				t.Fatalf("got %q\nwant it to contain %q", e.Msg, tc.want)
			}
			lines := strings.Split(string(data), "\n")
			if col := strings.Index(lines[e.Line-1], tc.at) + 1; col == 0 || e.Col != col {
				t.Errorf("at %d:%d (%q), want the column of %q", e.Line, e.Col, lines[e.Line-1], tc.at)
			}
		})
	}
}
