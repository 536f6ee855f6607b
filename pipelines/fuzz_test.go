package pipelines_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/pipelines"
)

// FuzzParse: Parse never panics and returns either a spec or a non-empty
// list of positioned errors, never both and never neither.
func FuzzParse(f *testing.F) {
	examples, _ := filepath.Glob("../examples/*.yaml")
	for _, p := range examples {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(data[:len(data)/2])            // cut mid-file
		f.Add(append([]byte("\t"), data...)) // tab indentation
	}
	for _, s := range []string{
		"",
		"version: 1\nname: t\nsource: {generate: {}}\nsink: {file: {path: x}}\n",
		"version: 1\nname: t\nsource:\n  kafka: {topics: [a], mode: receiver, wal: false}\nsink: {stdout: {}}\n",
		"version: 1\nname: ${NAME:-x}\nsource: {generate: {count: \"${N}\"}}\nsink: {file: {path: \"$${X}${Y\"}}\n",
		"version: 1\n---\nversion: 2\n",
		"- a\n- b\n",
		"a: &a [*a]\n",
		"transforms: [{plugin: ./p, settings: &s {x: *s}}]\n",
		"source: {generate: {<<: [*x]}}\n",
		"source: {generate: {<<: {count: 1}, count: 2}}\nsource: {}\n",
		"batch: {interval: -1s, max-records-per-partition: 1e30}\n",
		"? [a]\n: b\n",
		"name: !!binary aGVsbG8=\nversion: !custom 1\n",
		"sink:\n  file:\n    path: |\n      ${A}\n      x\n",
		// Built-in plugins' settings, checked by the step's Validate and
		// the plugin's own Configure (a filter expression is compiled).
		"version: 1\nname: t\nsource: {generate: {}}\nsink: {file: {path: x}}\ntransforms:\n  - {plugin: filter, settings: {expr: 'value contains \"e\" && fromJSON(value).n > 1'}}\n",
		"version: 1\nname: t\nsource: {generate: {}}\nsink: {file: {path: x}}\ntransforms:\n  - {plugin: extract, settings: {fields: [a.0, b], missing: null, unwrap: true}}\n  - {plugin: splt, settings: {delimter: 1}}\n",
	} {
		f.Add([]byte(s))
	}
	env := envOf(map[string]string{"N": "5", "NAME": "n", "EMPTY": ""})
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := pipelines.Parse("f.yaml", data, env, builtin)
		if (spec == nil) == (err == nil) {
			t.Fatalf("spec %v and error %v: want exactly one", spec, err)
		}
		if err != nil {
			var errs pipelines.Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T %v is not a non-empty Errors", err, err)
			}
			for _, e := range errs {
				if e.File != "f.yaml" || e.Line < 1 || e.Col < 1 || e.Msg == "" {
					t.Fatalf("error without a place or message: %#v", e)
				}
			}
		}
	})
}
