package host

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
)

var (
	hostileOnce sync.Once
	hostilePath string
	hostileErr  error
)

// hostilePlugin builds testdata/hostile once per test binary, without the
// race detector: its shadow memory would not fit any memory limit.
func hostilePlugin(t *testing.T) string {
	t.Helper()
	hostileOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-hostile-")
		if err != nil {
			hostileErr = err
			return
		}
		hostilePath = filepath.Join(dir, "hostile")
		// Without cgo: each cgo thread's 8 MiB stack counts against the
		// limit, and the test wants a limit it can predict.
		build := exec.Command("go", "build", "-o", hostilePath, "./testdata/hostile")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := build.CombinedOutput()
		if err != nil {
			hostileErr = fmt.Errorf("build testdata/hostile: %v\n%s", err, out)
		}
	})
	if hostileErr != nil {
		t.Fatal(hostileErr)
	}
	return hostilePath
}

// waitPIDs waits for the hostile plugin's pidfile: the plugin's pid and
// its child's.
func waitPIDs(t *testing.T, path string) (plugin, child int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			if _, err := fmt.Sscan(string(b), &plugin, &child); err == nil {
				return plugin, child
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no pids in %s", path)
	return 0, 0
}

func requireLinux(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal, the guard and memory: are Linux only")
	}
}

// A plugin's own children go with it when the host stops it.
func TestCloseKillsPluginChildren(t *testing.T) {
	requireLinux(t)
	pidfile := filepath.Join(t.TempDir(), "pids")
	tr := newTransform(t, Config{Plugin: hostilePlugin(t), Settings: map[string]any{"pidfile": pidfile}})
	plugin, child := waitPIDs(t, pidfile)
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
	if !alive(plugin) || !alive(child) {
		t.Fatalf("plugin %d alive %v, child %d alive %v while the host runs", plugin, alive(plugin), child, alive(child))
	}
	tr.Close()
	waitGone(t, plugin)
	waitGone(t, child)
}

// A SIGKILLed host leaves neither its plugin (parent-death signal) nor
// what the plugin started (the SDK's guard kills the plugin's group).
func TestNoGrandchildOrphansWhenHostIsKilled(t *testing.T) {
	requireLinux(t)
	pidfile := filepath.Join(t.TempDir(), "pids")
	self, _ := os.Executable()
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), testHostEnv+"=full", testHostPluginEnv+"="+hostilePlugin(t), testHostPIDFileEnv+"="+pidfile)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
		t.Fatalf("host printed no plugin pid: %v", err)
	}
	plugin, child := waitPIDs(t, pidfile)
	t.Cleanup(func() { syscall.Kill(plugin, syscall.SIGKILL); syscall.Kill(child, syscall.SIGKILL) })
	if !alive(plugin) || !alive(child) {
		t.Fatalf("plugin %d alive %v, child %d alive %v while the host runs", plugin, alive(plugin), child, alive(child))
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waitGone(t, plugin)
	waitGone(t, child)
}

// A plugin that allocates past memory: fails the batch with an error that
// names the plugin and the limit.
func TestMemoryLimit(t *testing.T) {
	requireLinux(t)
	// Without a collector the refused allocation is always reported as
	// such; Go 1.26's collector sometimes crashes on one instead (which
	// the error then calls a possible cause).
	t.Setenv("GOGC", "off")
	t.Setenv("GOMEMLIMIT", "off")
	const limit = 128 << 20
	tr := newTransform(t, Config{Name: "hog#1", Plugin: hostilePlugin(t), Memory: limit, MaxFailures: 1,
		Settings: map[string]any{"alloc_mib": 512}})
	_, _, err := tr.Process(context.Background(), []engine.Record{{Topic: "t", Value: []byte("x")}})
	if err == nil {
		t.Fatal("a plugin allocating 512 MiB under memory: 128MiB succeeded")
	}
	for _, want := range []string{"transform hog#1", "ran out of memory", "memory: 128MiB", "raise memory:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if engine.IsRetryable(err) {
		t.Errorf("the last allowed failure is still retryable: %v", err)
	}
	// Under the limit, the same plugin works.
	ok := newTransform(t, Config{Plugin: hostilePlugin(t), Memory: limit, Settings: map[string]any{"alloc_mib": 16}})
	if _, _, err := ok.Process(context.Background(), []engine.Record{{Topic: "t", Value: []byte("x")}}); err != nil {
		t.Fatalf("16 MiB under memory: 128MiB: %v", err)
	}
	// The limit is on the process, as the kernel says.
	limits, err := os.ReadFile("/proc/" + strconv.Itoa(ok.PIDs()[0]) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for l := range strings.Lines(string(limits)) {
		if strings.HasPrefix(l, "Max data size") {
			line = l
		}
	}
	if f := strings.Fields(strings.TrimPrefix(line, "Max data size")); len(f) < 2 || f[0] != strconv.Itoa(limit) || f[1] != strconv.Itoa(limit) {
		t.Errorf("plugin's RLIMIT_DATA is not %d: %q", limit, line)
	}
}

func TestMemoryOutOfRange(t *testing.T) {
	for _, m := range []int64{-1, 1 << 20, 2 << 40} {
		_, err := New(context.Background(), Config{Plugin: "uppercase", Memory: m})
		if err == nil || !strings.Contains(err.Error(), "memory: "+pipelines.ByteSize(m).String()+" is out of range; use 128MiB to 1TiB") {
			t.Errorf("memory %d: %v", m, err)
		}
	}
}

// A Config built in Go is held to the bounds lint applies to a file.
func TestTimeoutOutOfRange(t *testing.T) {
	_, err := New(context.Background(), Config{Plugin: "uppercase", Timeout: 2 * time.Hour})
	if err == nil || !strings.Contains(err.Error(), "timeout: 2h0m0s is out of range; use at most 1h0m0s") {
		t.Errorf("New = %v", err)
	}
}
