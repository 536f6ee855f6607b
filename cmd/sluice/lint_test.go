package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runLint runs the sluice command tree in-process with args, returning what
// it printed and its error.
func runLint(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	err := root.Execute()
	return out.String(), err
}

func writeLintFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLintThreeMistakes(t *testing.T) {
	dir := t.TempDir()
	bad := writeLintFile(t, dir, "bad.yaml", `version: 1
name: clicks
source:
  generate: {count: 10, partitons: 2}
batch:
  interval: 1 second
delivery: exactly-once
sink:
  stdout: {}
`)
	out, err := runLint(t, "lint", bad)
	var ec exitCode
	if !asExitCode(err, &ec) || ec != 1 {
		t.Fatalf("lint returned %v, want exitCode(1)\n%s", err, out)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	want := []string{
		bad + `:4:25: unknown key "partitons" in source.generate; did you mean "partitions"?`,
		bad + `:6:13: batch.interval: bad duration "1 second"`,
		bad + `:7:11: delivery: exactly-once is impossible with the stdout sink`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	pos := regexp.MustCompile(`^` + regexp.QuoteMeta(bad) + `:\d+:\d+: `)
	for i, w := range want {
		if !pos.MatchString(lines[i]) || !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i+1, lines[i], w)
		}
	}
}

func TestLintFiles(t *testing.T) {
	dir := t.TempDir()
	good := writeLintFile(t, dir, "good.yaml", "version: 1\nname: ok\nsource: {generate: {}}\nsink: {file: {path: ./out}}\n")
	empty := writeLintFile(t, dir, "empty.yaml", "")
	missing := filepath.Join(dir, "missing.yaml")

	out, err := runLint(t, "lint", good)
	if err != nil || out != good+": ok\n" {
		t.Errorf("lint good = %q, %v; want %q, nil", out, err, good+": ok\n")
	}

	// Every file is checked; one bad file makes the run fail.
	out, err = runLint(t, "lint", good, empty, missing)
	var ec exitCode
	if !errors.As(err, &ec) || ec != 1 {
		t.Errorf("lint with bad files returned %v, want exitCode(1)", err)
	}
	want := []string{good + ": ok", empty + ":1:1: file is empty", missing + ": cannot read the pipeline file"}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i+1, lines[i], w)
		}
	}

	if _, err := runLint(t, "lint"); err == nil {
		t.Error("lint without files succeeded, want a usage error")
	}
}

// The examples shipped in the repository lint clean through the CLI too.
func TestLintExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	out, err := runLint(t, append([]string{"lint"}, files...)...)
	if err != nil {
		t.Fatalf("lint examples: %v\n%s", err, out)
	}
	if got := strings.Count(out, ": ok\n"); got != len(files) {
		t.Errorf("%d ok lines for %d files:\n%s", got, len(files), out)
	}
}
