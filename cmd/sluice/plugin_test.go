package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/plugins/builtin"
	"github.com/sluicehq/sluice/plugins/host"
	"github.com/sluicehq/sluice/sinks/file/filetest"
)

// TestBuiltinPluginsRunThroughMain runs each built-in the way a pipeline
// does: the host re-executes this binary, whose main enters plugin mode.
func TestBuiltinPluginsRunThroughMain(t *testing.T) {
	t.Setenv("SLUICE_TEST_MAIN", "1") // inherited by the plugin process
	tests := []struct {
		plugin   string
		settings map[string]any
		in, want string
	}{
		{"uppercase", nil, "abc", "ABC"},
		{"filter", map[string]any{"expr": `value == "keep"`}, "keep", "keep"},
		{"extract", map[string]any{"fields": []string{"a"}, "unwrap": true}, `{"a":"x"}`, "x"},
		{"split", nil, "p q", "p,q"},
	}
	for _, tt := range tests {
		t.Run(tt.plugin, func(t *testing.T) {
			tr, err := host.New(context.Background(), host.Config{
				Pipeline: "p", Plugin: tt.plugin, Settings: tt.settings,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tr.Close() })
			out, _, err := tr.Process(context.Background(), []engine.Record{{Topic: "t", Value: []byte(tt.in)}})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range out {
				got = append(got, string(r.Value))
			}
			if strings.Join(got, ",") != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPluginModeByHandRefuses(t *testing.T) {
	cmd := sluice(t)
	cmd.Env = append(cmd.Env, builtin.EnvName+"=uppercase")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "plugin") {
		t.Fatalf("started by hand in plugin mode: err %v, output %s", err, out)
	}
}

func TestPluginListAndNew(t *testing.T) {
	out, err := sluice(t, "plugin", "list").Output()
	if err != nil || string(out) != "extract\nfilter\nsplit\nuppercase\n" {
		t.Fatalf("plugin list: %v %q", err, out)
	}
	dir := filepath.Join(t.TempDir(), "hello")
	out, err = sluice(t, "plugin", "new", "hello", "--dir", dir, "--no-tidy").CombinedOutput()
	if err != nil {
		t.Fatalf("plugin new: %v\n%s", err, out)
	}
	for _, f := range []string{"main.go", "main_test.go", "README.md", "go.mod"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("plugin new did not write %s: %v", f, err)
		}
	}
	if !strings.Contains(string(out), "plugin: "+filepath.Join(dir, "hello")) {
		t.Errorf("output does not say how to use the plugin:\n%s", out)
	}
	if out, err := sluice(t, "plugin", "new", "Bad Name").CombinedOutput(); err == nil {
		t.Errorf("plugin new accepted a bad name: %s", out)
	}
}

// TestRunSurvivesPluginCrash runs a pipeline whose first transform crashes
// once mid-stream: the batch is recomputed on a restarted plugin, and every
// record still comes out exactly once, through a built-in second step.
func TestRunSurvivesPluginCrash(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "crashonce")
	build := exec.Command("go", "build", "-o", plugin, "./testdata/crashonce")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build test plugin: %v\n%s", err, out)
	}
	const count = 4000
	spec := fmt.Sprintf(`version: 1
name: plugin-crash
source:
  generate: {count: %d, partitions: 4}
batch: {interval: 20ms, max-records-per-partition: 300}
delivery: exactly-once
transforms:
  - plugin: ./crashonce
    settings: {marker: %s}
    workers: 2
  - plugin: filter
    settings: {expr: 'int(value) >= 0'}
sink:
  file: {path: %s, format: raw}
`, count, filepath.Join(dir, "crashed"), filepath.Join(dir, "out"))
	file := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(file, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := sluice(t, "run", file, "--data", filepath.Join(dir, "data"), "--idle-exit", "1s")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sluice run: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "crashed")); err != nil {
		t.Fatal("the plugin never crashed; the test proves nothing")
	}
	if !strings.Contains(string(out), "restarting plugin") {
		t.Errorf("no restart in the log:\n%s", out)
	}
	checkExactlyOnce(t, filetest.Lines(t, filepath.Join(dir, "out")), count, true)
}
