package host

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/plugins/builtin"
	"github.com/sluicehq/sluice/plugins/sdk"
)

// The test binary doubles as every process these tests need, chosen before
// any test runs: a built-in plugin (re-executed by the host exactly as the
// sluice binary is), the test plugin (when started under the name
// testPluginName), or a host process for the orphan test.
func TestMain(m *testing.M) {
	builtin.MaybeServe()
	switch filepath.Base(os.Args[0]) {
	case testPluginName:
		sdk.Serve(testPlugin())
		os.Exit(0)
	case testStatePluginName:
		sdk.Serve(testStatePlugin())
		os.Exit(0)
	case testBadStatePluginName:
		serveBadStatePlugin()
		os.Exit(0)
	}
	if os.Getenv(testHostEnv) != "" {
		runTestHost()
	}
	code := m.Run()
	if hostilePath != "" {
		os.RemoveAll(filepath.Dir(hostilePath)) // built once for all tests
	}
	os.Exit(code)
}

const (
	testPluginName = "sluice-test-plugin"
	testHostEnv    = "SLUICE_TEST_HOST"
	// The orphan test's host runs this plugin with this pidfile setting.
	testHostPluginEnv  = "SLUICE_TEST_HOST_PLUGIN"
	testHostPIDFileEnv = "SLUICE_TEST_HOST_PIDFILE"
)

type testSettings struct {
	// CrashOnceMarker: crash on the first "crash-once" record seen by any
	// process (the marker file remembers), succeed afterwards.
	CrashOnceMarker string `json:"crash_once_marker"`
}

// testPlugin upper-cases values, and misbehaves on request: the value
// "crash" exits the process, "panic" panics in Map, "hang" never answers, "reject" is rejected,
// "fail" fails the batch, "retry" fails it retryably.
func testPlugin() sdk.Transform {
	return sdk.WithSettings(func(s testSettings) (sdk.Transform, error) {
		return sdk.Map(func(r sdk.Record) (sdk.Record, error) {
			switch string(r.Value) {
			case "crash":
				// On a goroutine of its own: the SDK recovers a panic in
				// Map itself (it rejects the record), not one elsewhere.
				go panic("boom: crashing on purpose")
				select {}
			case "panic":
				var none []int
				_ = none[len(r.Value)] // an index out of range, as a bug would be
			case "crash-once":
				if _, err := os.Stat(s.CrashOnceMarker); err != nil {
					_ = os.WriteFile(s.CrashOnceMarker, nil, 0o600)
					os.Exit(3)
				}
			case "hang":
				select {}
			case "reject":
				return r, errors.New("rejected on purpose")
			case "fail":
				return r, sdk.FailBatch(errors.New("failed on purpose"))
			case "retry":
				return r, sdk.FailBatch(engine.Retryable(errors.New("retry on purpose")))
			case "log":
				sdk.Logger().Warn("hello from the plugin", "n", 7)
			}
			r.Value = []byte(string(r.Value) + "!")
			return r, nil
		}), nil
	})
}

// runTestHost is a host process for the orphan test: it starts a plugin,
// prints the plugin's pid and waits to be killed.
func runTestHost() {
	if os.Getenv(testHostEnv) == "parent-watch-only" {
		// Drop the parent-death signal to prove the SDK's fallback.
		isolate = func(cmd *exec.Cmd) { isolateGroupOnly(cmd) }
	}
	cfg := Config{Pipeline: "p", Plugin: "uppercase"}
	if p := os.Getenv(testHostPluginEnv); p != "" {
		// The hostile plugin, which starts a child of its own.
		cfg.Plugin, cfg.Settings = p, map[string]any{"pidfile": os.Getenv(testHostPIDFileEnv)}
	}
	t, err := New(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(w, t.PIDs()[0])
	w.Flush()
	time.Sleep(time.Hour)
	os.Exit(0)
}
