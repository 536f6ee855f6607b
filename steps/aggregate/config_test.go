package aggregate_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/components"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/steps/aggregate"
)

func pipelineWith(step string, extra ...string) []byte {
	lines := append([]string{
		"version: 1",
		"name: agg",
		"source: {generate: {count: 10}}",
		"sink: {file: {path: ./out}}",
	}, extra...)
	lines = append(lines, "transforms:", "  - aggregate: "+step)
	return []byte(strings.Join(lines, "\n") + "\n")
}

// TestLintAcceptsTheIssueShape: the block exactly as issue 16 writes it.
func TestLintAcceptsTheIssueShape(t *testing.T) {
	data := []byte(`version: 1
name: agg
source: {generate: {count: 10}}
sink: {file: {path: ./out}}
transforms:
  - aggregate:
      key: key                      # the record key, or a JSON field path
      window: {tumbling: 1m}        # or {sliding: {size: 10m, every: 1m}}, {session: {gap: 30s}}; none = running total
      time: event                   # event (a JSON field or the record timestamp) | processing
      allowed-lateness: 10s
      functions: {count: count, total: sum(amount), top: max(amount), users: count-distinct(user)}
      emit: on-close
`)
	s, err := components.Builtin.Parse("t.yaml", data, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := s.Transforms[0].Config.(*aggregate.Step)
	if !ok || st.Aggregate.Window.Tumbling.D().String() != "1m0s" || st.Aggregate.Functions["users"] != "count-distinct(user)" {
		t.Fatalf("decoded %+v", s.Transforms[0].Config)
	}
	for _, w := range []string{"{sliding: {size: 10m, every: 1m}}", "{session: {gap: 30s}}"} {
		if _, err := components.Builtin.Parse("t.yaml", pipelineWith("{key: user.id, window: "+w+", functions: {n: count}}"), nil); err != nil {
			t.Errorf("window %s: %v", w, err)
		}
	}
	if _, err := components.Builtin.Parse("t.yaml", pipelineWith("{key: key, functions: {n: count}}"), nil); err != nil {
		t.Errorf("a running total: %v", err)
	}
}

// TestLintRefuses: each mistake gives one line at its place that says
// what to write.
func TestLintRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, step string
		extra      []string
		line, col  int
		want       string
	}{
		{"bad function", "{key: key, window: {tumbling: 1m}, functions: {total: summ(amount)}}", nil, 6, 70,
			`transforms[0].aggregate.functions.total: "summ(amount)": no function "summ"; write count, sum(FIELD)`},
		{"function without field", "{key: key, functions: {total: sum()}}", nil, 6, 46, `"sum()" names no field; write sum(FIELD), such as sum(amount)`},
		{"reserved name", "{key: key, functions: {key: count}}", nil, 6, 39, "transforms[0].aggregate.functions.key: key is a field the step writes itself; name the function otherwise, such as key_count"},
		{"no functions", "{key: key, functions: {}}", nil, 6, 38, "functions is empty; write at least one, such as functions: {count: count}"},
		{"two windows", "{key: key, window: {tumbling: 1m, session: {gap: 1s}}, functions: {n: count}}", nil, 6, 50, "window has both tumbling and session; keep exactly one"},
		{"empty window", "{key: key, window: {}, functions: {n: count}}", nil, 6, 35, "window names no window; write {tumbling: 1m}"},
		{"bad tumbling", "{key: key, window: {tumbling: 1x}, functions: {n: count}}", nil, 6, 46, `window.tumbling: bad duration "1x"`},
		{"tiny window", "{key: key, window: {tumbling: 1ns}, functions: {n: count}}", nil, 6, 46, "window.tumbling is 1ns; write a duration between 1ms and 8784h0m0s"},
		{"sliding not a multiple", "{key: key, window: {sliding: {size: 10m, every: 3m}}, functions: {n: count}}", nil, 6, 52,
			"window.sliding.size (10m0s) is not a multiple of every (3m0s); write size: 12m0s"},
		{"sliding every > size", "{key: key, window: {sliding: {size: 1m, every: 2m}}, functions: {n: count}}", nil, 6, 63, "is longer than size (1m0s), which would leave gaps no window covers; write every: 1m0s or less"},
		{"sliding too many", "{key: key, window: {sliding: {size: 1h, every: 1s}}, functions: {n: count}}", nil, 6, 63, "size/every is 3600 windows per record, more than 100; write every: 36s or more"},
		{"lateness keeps too many open", "{key: key, window: {tumbling: 1s}, allowed-lateness: 1h, functions: {n: count}}", nil, 6, 46,
			"with allowed-lateness 1h0m0s keeps up to 3602 windows of a key open, more than 1000; lengthen the window or shorten allowed-lateness"},
		{"on-close without window", "{key: key, emit: on-close, functions: {n: count}}", nil, 6, 33, "on-close needs a window"},
		{"lateness in processing time", "{key: key, window: {tumbling: 1m}, time: processing, allowed-lateness: 1s, functions: {n: count}}", nil, 6, 69, "applies to event time; with time: processing no record is late, so remove it"},
		{"time-field in processing time", "{key: key, window: {tumbling: 1m}, time: processing, time-field: ts, functions: {n: count}}", nil, 6, 69, "reads event time, and time is processing; remove time-field, or write time: event"},
		{"bad key path", "{key: user..id, functions: {n: count}}", nil, 6, 22, `transforms[0].aggregate.key "user..id" has an empty segment`},
		{"bad time", "{key: key, time: wall, functions: {n: count}}", nil, 6, 33, `bad value "wall"`},
		{"not exactly once", "{key: key, functions: {n: count}}", []string{"delivery: at-least-once"}, 7, 5,
			"the aggregate step keeps state that commits with the sink's output, which takes delivery: exactly-once, not at-least-once; write delivery: exactly-once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := components.Builtin.Parse("t.yaml", pipelineWith(tc.step, tc.extra...), nil)
			var errs pipelines.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v, want a lint error", err)
			}
			if len(errs) != 1 {
				t.Fatalf("%d errors, want 1:\n%v", len(errs), err)
			}
			e := errs[0]
			if !strings.Contains(e.Msg, tc.want) || strings.Contains(e.Msg, "\n") {
				t.Fatalf("got %q\nwant it to contain %q", e.Msg, tc.want)
			}
			if e.Line != tc.line || e.Col != tc.col {
				t.Errorf("at %d:%d, want %d:%d (%s)", e.Line, e.Col, tc.line, tc.col, e.Msg)
			}
		})
	}
}
