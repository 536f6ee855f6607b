package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/sinks/file/filetest"
)

// run from another directory writes a pipeline's relative sink path
// beside the pipeline file, while --data stays relative to the current
// directory, as a command-line flag is.
func TestRunRelativePathsFromAnotherDirectory(t *testing.T) {
	root := t.TempDir()
	pipes, cwd := filepath.Join(root, "pipes"), filepath.Join(root, "elsewhere")
	for _, d := range []string{pipes, cwd} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	spec := filepath.Join(pipes, "p.yaml")
	if err := os.WriteFile(spec, []byte("version: 1\nname: rel\nsource: {generate: {count: 500, partitions: 2}}\ndelivery: at-least-once\nsink: {file: {path: ./out, format: raw}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := sluice(t, "run", spec, "--data", "state", "--idle-exit", "200ms")
	cmd.Dir = cwd
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	checkExactlyOnce(t, filetest.Lines(t, filepath.Join(pipes, "out")), 500, true) // one run, no crash: each once
	if _, err := os.Stat(filepath.Join(cwd, "out")); !os.IsNotExist(err) {
		t.Errorf("output went to the current directory too (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(cwd, "state")); err != nil {
		t.Errorf("--data is not relative to the current directory: %v", err)
	}
}
