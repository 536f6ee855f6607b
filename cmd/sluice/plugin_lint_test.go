package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The issue 13 probes: each now fails lint with one line that says what to
// write, instead of passing lint (and failing, or allocating gigabytes, at
// run) or taking seconds and gigabytes to lint. The expansion stops at the
// reference that passes the cap (the 23rd of 32 KiB), which the line names.
func TestLintRefusesOversizedSettings(t *testing.T) {
	dir := t.TempDir()
	var refs strings.Builder
	for i := range 16_000 {
		fmt.Fprintf(&refs, "      k%d: ${BIG}\n", i)
	}
	t.Setenv("BIG", strings.Repeat("x", 32<<10))
	for _, tc := range []struct {
		name, file, want string
	}{
		{"expansion", "version: 1\nname: p\nsource: {generate: {}}\ndelivery: at-least-once\nsink: {stdout: {}}\ntransforms:\n  - plugin: uppercase\n    settings:\n" + refs.String(),
			":31:12: with its ${VAR} references expanded the file passes 1048576 bytes (1 MiB), the cap for a pipeline"},
		{"partitions", "version: 1\nname: p\nsource: {generate: {partitions: 2000000000}}\ndelivery: at-least-once\nsink: {stdout: {}}\n",
			":3:33: source.generate.partitions must be at most 10000, got 2000000000; write partitions: 10000 or less"},
		{"workers", "version: 1\nname: p\nsource: {generate: {}}\ndelivery: at-least-once\nsink: {stdout: {}}\ntransforms:\n  - {plugin: uppercase, workers: 9223372036854775807}\n",
			":7:34: transforms[0].workers must be at most 64, got 9223372036854775807; write workers: 64 or less"},
		{"memory", "version: 1\nname: p\nsource: {generate: {}}\ndelivery: at-least-once\nsink: {stdout: {}}\ntransforms:\n  - {plugin: uppercase, memory: 100TiB}\n",
			":7:33: transforms[0].memory must be at most 1TiB, got 100TiB; write memory: 1TiB or less"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeLintFile(t, dir, tc.name+".yaml", tc.file)
			out, err := runLint(t, "lint", path)
			var ec exitCode
			if !asExitCode(err, &ec) || ec != 1 {
				t.Fatalf("lint returned %v, want exitCode(1)\n%s", err, out)
			}
			if lines := strings.Split(strings.TrimRight(out, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], path+tc.want) {
				t.Errorf("lint said:\n%s\nwant one line starting %q", out, path+tc.want)
			}
		})
	}
}

// The issue 15 probes: lint knew nothing of plugins and said ok to files
// that run refused at once. Each now fails lint with one line saying what
// to change.
func TestLintKnowsPlugins(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "reverse"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeLintFile(t, dir, "reverse/reverse", "#!/bin/sh\n")
	if err := os.Chmod(filepath.Join(dir, "reverse", "reverse"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeLintFile(t, dir, "notes.txt", "not a program\n")
	sum := strings.Repeat("ab", 32)
	for _, tc := range []struct{ name, step, want string }{
		{"unknown built-in", "plugin: uppercse",
			`:7:13: plugin "uppercse" is not a built-in; did you mean "uppercase"?`},
		{"unknown setting", `{plugin: split, settings: {delimter: ","}}`,
			`:7:32: unknown setting "delimter" for the split plugin; did you mean "delimiter"? its settings are delimiter, keep-empty`},
		{"setting of a wrong type", `{plugin: split, settings: {delimiter: 1}}`,
			`:7:43: transforms[0].settings.delimiter is a number; the split plugin wants a string, e.g. delimiter: ","`},
		{"settings on a plugin without", `{plugin: uppercase, settings: {upper: true}}`,
			`:7:36: the uppercase plugin takes no settings; remove transforms[0].settings.upper`},
		{"required setting", `{plugin: filter}`,
			`:7:14: the filter plugin needs settings.expr; write settings: {expr: 'value contains "error"'}`},
		{"value not allowed", `{plugin: extract, settings: {fields: [a], missing: skip}}`,
			`:7:56: bad value "skip" for transforms[0].settings.missing; write one of: reject, null`},
		{"what the plugin's own Configure refuses", `{plugin: filter, settings: {expr: "value +"}}`,
			`:7:32: transforms[0]: settings: expr: unexpected token EOF`},
		{"sha256 on a built-in", "{plugin: uppercase, sha256: " + sum + "}",
			`:7:25: sha256 checks a plugin executable, and "uppercase" is built into sluice; remove sha256`},
		{"workers out of range", "{plugin: uppercase, workers: 65}",
			`:7:34: transforms[0].workers must be at most 64, got 65; write workers: 64 or less`},
		{"a folder for the binary", "plugin: ./reverse",
			`:7:13: plugin ./reverse is a folder; write plugin: ./reverse/reverse (the binary inside it)`},
		{"not executable", "plugin: ./notes.txt",
			`:7:13: plugin ./notes.txt is not executable`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeLintFile(t, dir, "p.yaml", "version: 1\nname: p\nsource: {generate: {}}\ndelivery: at-least-once\nsink: {stdout: {}}\ntransforms:\n  - "+tc.step+"\n")
			out, err := runLint(t, "lint", path)
			var ec exitCode
			if !asExitCode(err, &ec) || ec != 1 {
				t.Fatalf("lint returned %v, want exitCode(1)\n%s", err, out)
			}
			if lines := strings.Split(strings.TrimRight(out, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], path+tc.want) {
				t.Errorf("lint said:\n%s\nwant one line starting %q", out, path+tc.want)
			}
		})
	}
}

// A plugin path with nothing there yet is a warning (it may be built
// before the pipeline runs), an error under --strict; paths are taken from
// the pipeline file's folder, not the current directory.
func TestLintPluginPathStrict(t *testing.T) {
	dir := t.TempDir()
	path := writeLintFile(t, dir, "p.yaml", "version: 1\nname: p\nsource: {generate: {}}\ndelivery: at-least-once\nsink: {stdout: {}}\ntransforms:\n  - plugin: ./bin/reverse\n")
	warning := path + ":7:13: warning: plugin ./bin/reverse: no file at " + filepath.Join(dir, "bin", "reverse") + " yet"
	out, err := runLint(t, "lint", path)
	if err != nil || !strings.HasPrefix(out, warning) || !strings.HasSuffix(out, path+": ok\n") {
		t.Fatalf("lint: %v\n%s\nwant the warning %q and ok", err, out, warning)
	}
	out, err = runLint(t, "lint", "--strict", path)
	var ec exitCode
	if !asExitCode(err, &ec) || ec != 1 || strings.Contains(out, ": ok") || !strings.HasPrefix(out, warning) {
		t.Fatalf("lint --strict: %v\n%s\nwant exit 1 with the warning", err, out)
	}
	// Built, beside the pipeline file: ok under --strict too.
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeLintFile(t, dir, "bin/reverse", "#!/bin/sh\n")
	if err := os.Chmod(filepath.Join(dir, "bin", "reverse"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := runLint(t, "lint", "--strict", path); err != nil || out != path+": ok\n" {
		t.Fatalf("lint --strict of a built plugin: %v\n%s", err, out)
	}
}

// plugin list --settings shows what lint checks a built-in's settings
// against, from the same declarations.
func TestPluginListSettings(t *testing.T) {
	out, err := runLint(t, "plugin", "list", "--settings")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^filter\n  expr +string +required +expr-lang expression`),
		regexp.MustCompile(`(?m)^  missing +string +default reject; one of reject, null `),
		regexp.MustCompile(`(?m)^  fields +list of strings +required `),
		regexp.MustCompile(`(?m)^uppercase\n  \(no settings\)$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("plugin list --settings lacks %s:\n%s", want, out)
		}
	}
}
