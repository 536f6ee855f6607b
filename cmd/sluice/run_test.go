package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testhook"
	"github.com/sluicehq/sluice/sinks/file/filetest"
)

// TestMain lets tests run this binary's main as a real child process:
// the test re-executes itself with SLUICE_TEST_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_TEST_MAIN") == "1" {
		if marker := os.Getenv("SLUICE_TEST_FREEZE_BEFORE_COMMIT"); marker != "" {
			freezeBeforeFirstCommit(marker)
		}
		if step := os.Getenv("SLUICE_TEST_KILL_AT_CLEANER_STEP"); step != "" {
			killAtCleanerStep(step)
		}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// freezeBeforeFirstCommit makes the first commit of this process wait: it
// creates the marker file, then sleeps long enough for the test that sees
// the file to SIGSTOP the process right there, between a batch's write and
// its commit.
func freezeBeforeFirstCommit(marker string) {
	var once sync.Once
	testhook.BeforeCommit = func() {
		once.Do(func() {
			os.WriteFile(marker, nil, 0o644)
			time.Sleep(2 * time.Second)
		})
	}
}

// sluice starts the sluice CLI as a child process.
func sluice(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
	return cmd
}

// checkExactlyOnce asserts lines hold each of 0..n-1 at most once (and
// exactly once when complete).
func checkExactlyOnce(t *testing.T, lines []string, n int, complete bool) {
	t.Helper()
	seen := make([]bool, n)
	for _, l := range lines {
		i, err := strconv.Atoi(l)
		if err != nil || i < 0 || i >= n {
			t.Fatalf("unexpected line %q", l)
		}
		if seen[i] {
			t.Fatalf("value %d appears twice", i)
		}
		seen[i] = true
	}
	if complete {
		for i, ok := range seen {
			if !ok {
				t.Fatalf("value %d is missing (%d of %d present)", i, len(lines), n)
			}
		}
	}
}

// writePipeline writes a generate → file pipeline. The tests that watch
// output while a pipeline runs, and kill it, give the file sink a small
// roll: part files roll every few epochs and soon after the source goes
// quiet, so kills land before, inside and after rolls, and output shows
// within the tests' deadlines (the default, 128 MiB or 1m, would show it
// only a minute later or when the pipeline stops).
func writePipeline(t *testing.T, dir string, count, rate int) string {
	t.Helper()
	spec := fmt.Sprintf(`version: 1
name: kill-test
source:
  generate: {count: %d, partitions: 4, keys: 16, rate: %d}
batch: {interval: 20ms, max-records-per-partition: 5000}
delivery: exactly-once
sink:
  file: {path: %s, format: raw, roll: {bytes: 16384, interval: 200ms}}
`, count, rate, filepath.Join(dir, "out"))
	path := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitForOutput waits until at least min lines are visible.
func waitForOutput(t *testing.T, dir string, min int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(filetest.Lines(t, dir)) < min {
		if time.Now().After(deadline) {
			t.Fatalf("no output after 30s in %s", dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunSIGKILLThenResumeIsExactlyOnce(t *testing.T) {
	dir := t.TempDir()
	const count = 60000
	spec := writePipeline(t, dir, count, 20000) // ~3s of data
	out := filepath.Join(dir, "out")
	for round := 0; round < 2; round++ {
		cmd := sluice(t, "run", spec, "--data", filepath.Join(dir, "data"), "--idle-exit", "500ms")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitForOutput(t, out, (round+1)*count/4)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		checkExactlyOnce(t, filetest.Lines(t, out), count, false)
	}
	cmd := sluice(t, "run", spec, "--data", filepath.Join(dir, "data"), "--idle-exit", "500ms")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("final run: %v\n%s", err, b)
	}
	checkExactlyOnce(t, filetest.Lines(t, out), count, true)
}

func TestRunSIGTERMExitsZeroAndResumes(t *testing.T) {
	dir := t.TempDir()
	const count = 40000
	spec := writePipeline(t, dir, count, 20000)
	out := filepath.Join(dir, "out")
	cmd := sluice(t, "run", spec, "--data", filepath.Join(dir, "data"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForOutput(t, out, count/4)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("SIGTERM must exit 0, got %v", err)
	}
	checkExactlyOnce(t, filetest.Lines(t, out), count, false)
	if b, err := sluice(t, "run", spec, "--data", filepath.Join(dir, "data"), "--idle-exit", "300ms").CombinedOutput(); err != nil {
		t.Fatalf("resume: %v\n%s", err, b)
	}
	checkExactlyOnce(t, filetest.Lines(t, out), count, true)
}

func TestRunExampleWritesEachValueOnce(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile("../../examples/generate-to-file.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Point the example's output into the test's directory.
	spec := strings.ReplaceAll(string(b), "./out/", dir+"/out/")
	if spec == string(b) {
		t.Fatal("the example no longer writes under ./out/; update this test")
	}
	path := filepath.Join(dir, "example.yaml")
	os.WriteFile(path, []byte(spec), 0o644)
	cmd := sluice(t, "run", path, "--idle-exit", "1s", "--data", filepath.Join(dir, "data"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	checkExactlyOnce(t, filetest.Lines(t, filepath.Join(dir, "out")), 100000, true)
}
