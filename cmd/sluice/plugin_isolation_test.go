package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildHostile builds plugins/host/testdata/hostile, a plugin that starts a
// child process or allocates on request, without cgo so that its memory
// under a limit is predictable.
func buildHostile(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal, the SDK's guard and memory: are Linux only")
	}
	path := filepath.Join(t.TempDir(), "hostile")
	build := exec.Command("go", "build", "-o", path, "../../plugins/host/testdata/hostile")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build test plugin: %v\n%s", err, out)
	}
	return path
}

// running reports whether pid is a live process (not gone, not a zombie),
// as /proc says.
func running(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func waitNotRunning(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still running after sluice run ended", what, pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// However sluice run ends, neither its plugin nor what the plugin started
// (a plain exec of sleep) lives on.
func TestPluginAndItsChildrenDieWithRun(t *testing.T) {
	plugin := buildHostile(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			pidfile := filepath.Join(dir, "pids")
			spec := fmt.Sprintf(`version: 1
name: orphans
source:
  generate: {rate: 1000}
batch: {interval: 50ms}
transforms:
  - plugin: %s
    settings: {pidfile: %s}
sink:
  file: {path: %s, format: raw, roll: {per-epoch: true}}
`, plugin, pidfile, filepath.Join(dir, "out"))
			file := filepath.Join(dir, "p.yaml")
			if err := os.WriteFile(file, []byte(spec), 0o644); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			cmd := sluice(t, "run", file, "--data", filepath.Join(dir, "data"))
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			var pluginPID, childPID int
			deadline := time.Now().Add(30 * time.Second)
			for {
				if b, err := os.ReadFile(pidfile); err == nil {
					if _, err := fmt.Sscan(string(b), &pluginPID, &childPID); err == nil {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("the plugin wrote no pids; sluice run said:\n%s", out.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Cleanup(func() { syscall.Kill(pluginPID, syscall.SIGKILL); syscall.Kill(childPID, syscall.SIGKILL) })
			waitForOutput(t, filepath.Join(dir, "out"), 1)
			if !running(pluginPID) || !running(childPID) {
				t.Fatalf("plugin %d running %v, its child %d running %v while sluice runs", pluginPID, running(pluginPID), childPID, running(childPID))
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			if sig == syscall.SIGTERM && err != nil {
				t.Errorf("sluice run after SIGTERM: %v\n%s", err, out.String())
			}
			waitNotRunning(t, "plugin", pluginPID)
			waitNotRunning(t, "the plugin's child", childPID)
		})
	}
}

// A plugin that allocates past its memory: fails the pipeline with an
// error naming the step and the limit.
func TestPluginMemoryLimitFailsRun(t *testing.T) {
	plugin := buildHostile(t)
	dir := t.TempDir()
	spec := fmt.Sprintf(`version: 1
name: hog
source:
  generate: {count: 10}
delivery: at-least-once
transforms:
  - plugin: %s
    settings: {alloc_mib: 512}
    memory: 128MiB
sink:
  file: {path: %s, format: raw}
`, plugin, filepath.Join(dir, "out"))
	file := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(file, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := sluice(t, "run", file, "--data", filepath.Join(dir, "data"), "--idle-exit", "1s")
	// No collector in the plugin: its refused allocation is then always
	// reported as such (see plugins/host TestMemoryLimit).
	cmd.Env = append(cmd.Env, "GOGC=off", "GOMEMLIMIT=off")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("sluice run: %v, want a failure\n%s", err, out)
	}
	for _, want := range []string{"transform hostile#1", "ran out of memory", "memory: 128MiB", "raise memory:"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
