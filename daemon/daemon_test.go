package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/sinks/file/filetest"
)

// pipelineYAML is a generate → file pipeline writing into out/NAME, one
// part file per epoch so the tests see output as it commits.
func pipelineYAML(name, out string, count, rate int) string {
	return fmt.Sprintf(`version: 1
name: %s
source:
  generate: {topic: %s, count: %d, partitions: 2, rate: %d}
batch: {interval: 20ms, max-records-per-partition: 1000}
sink:
  file: {path: %s, format: raw, roll: {per-epoch: true}}
`, name, name, count, rate, filepath.Join(out, name))
}

type testDaemon struct {
	t      *testing.T
	d      *Daemon
	dir    string // pipelines
	out    string
	base   string // http://addr
	token  string // the API token
	cancel context.CancelFunc
	done   chan error
}

// startDaemon starts a daemon on loopback port 0; opts change its
// configuration first.
func startDaemon(t *testing.T, opts ...func(*Config)) *testDaemon {
	t.Helper()
	root := t.TempDir()
	td := &testDaemon{t: t, dir: filepath.Join(root, "pipelines"), out: filepath.Join(root, "out"), done: make(chan error, 1)}
	os.MkdirAll(td.dir, 0o755)
	cfg := Config{PipelinesDir: td.dir, DataDir: filepath.Join(root, "data"), HTTPAddr: "127.0.0.1:0",
		BrokerAddr: "127.0.0.1:0", Version: "test", Logger: slog.New(slog.DiscardHandler), ScanInterval: 50 * time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Listen(); err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(d.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	td.d, td.base, td.token = d, "http://"+d.HTTPAddr(), strings.TrimSpace(string(token))
	ctx, cancel := context.WithCancel(context.Background())
	td.cancel = cancel
	go func() { td.done <- d.Run(ctx) }()
	t.Cleanup(func() { td.stop() })
	return td
}

func (td *testDaemon) stop() error {
	if td.cancel == nil {
		return nil
	}
	td.cancel()
	td.cancel = nil
	return <-td.done
}

// write replaces a pipeline file at once (a dot file renamed into place),
// so a scan never reads it half written.
func (td *testDaemon) write(file, content string) {
	td.t.Helper()
	tmp := filepath.Join(td.dir, "."+file)
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		td.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(td.dir, file)); err != nil {
		td.t.Fatal(err)
	}
}

func (td *testDaemon) get(path string, v any) int {
	td.t.Helper()
	resp, err := http.Get(td.base + path)
	if err != nil {
		td.t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			td.t.Fatalf("GET %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

// post sends an empty POST with the token, as the README's curl does.
func (td *testDaemon) post(path string) int {
	td.t.Helper()
	code, _, err := td.do("POST", path, "", map[string]string{"Authorization": "Bearer " + td.token})
	if err != nil {
		td.t.Fatal(err)
	}
	return code
}

// do sends a request with a body (if not "") and headers ("Host" sets
// the Host header) and returns the answer.
func (td *testDaemon) do(method, path, body string, header map[string]string) (int, string, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, td.base+path, rd)
	if err != nil {
		return 0, "", err
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitFor polls cond until it holds.
func (td *testDaemon) waitFor(what string, cond func() bool) {
	td.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			td.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (td *testDaemon) info(name string) Info {
	var in Info
	td.get("/pipelines/"+name, &in)
	return in
}

// lines returns every value in the visible part files of out/name.
func (td *testDaemon) lines(name string) []string {
	td.t.Helper()
	return filetest.Lines(td.t, filepath.Join(td.out, name))
}

func exactlyOnce(t *testing.T, lines []string, n int) {
	t.Helper()
	seen := make([]bool, n)
	for _, l := range lines {
		i, err := strconv.Atoi(l)
		if err != nil || i < 0 || i >= n || seen[i] {
			t.Fatalf("value %q is unexpected or repeated", l)
		}
		seen[i] = true
	}
	if len(lines) != n {
		t.Fatalf("%d values, want %d", len(lines), n)
	}
}

func TestDaemonRunsPausesReloadsAndStops(t *testing.T) {
	td := startDaemon(t)
	td.write("a.yaml", pipelineYAML("alpha", td.out, 4000, 4000))
	td.write("b.yaml", pipelineYAML("beta", td.out, 500, 0))
	td.write("broken.yaml", "version: 1\nname: broken\nsource: {generat: {}}\nsink: {file: {path: x}}\n")

	td.waitFor("beta to finish", func() bool { return len(td.lines("beta")) == 500 })
	var list []Info
	td.waitFor("three pipelines listed", func() bool { td.get("/pipelines", &list); return len(list) == 3 })
	states := map[string]string{}
	for _, in := range list {
		states[in.Name] = in.State
	}
	if states["alpha"] != StateRunning || states["beta"] != StateRunning || states["broken"] != StateInvalid {
		t.Fatalf("states %v", states)
	}
	if in := td.info("broken"); !strings.Contains(in.Error, `unknown key "generat"`) {
		t.Fatalf("an invalid file must say why: %+v", in)
	}
	if code := td.get("/pipelines/nope", nil); code != http.StatusNotFound {
		t.Fatalf("unknown pipeline: %d", code)
	}

	// Pause: the pipeline drains and no output follows until resumed.
	if code := td.post("/pipelines/alpha/pause"); code != http.StatusAccepted {
		t.Fatalf("pause: %d", code)
	}
	td.waitFor("alpha paused", func() bool { return td.info("alpha").State == StatePaused })
	n := len(td.lines("alpha"))
	time.Sleep(300 * time.Millisecond)
	if m := len(td.lines("alpha")); m != n {
		t.Fatalf("a paused pipeline wrote %d more records", m-n)
	}
	td.post("/pipelines/alpha/resume")
	td.waitFor("alpha running again", func() bool { return td.info("alpha").State == StateRunning })

	// Reload: a changed file drains and restarts the pipeline, which
	// resumes from its sink; here it also learns a bigger count.
	td.write("a.yaml", pipelineYAML("alpha", td.out, 5000, 0))
	td.waitFor("alpha to finish after the reload", func() bool { return len(td.lines("alpha")) == 5000 })
	exactlyOnce(t, td.lines("alpha"), 5000)
	exactlyOnce(t, td.lines("beta"), 500)

	// Restart through the API keeps exactly-once too.
	if code := td.post("/pipelines/beta/restart"); code != http.StatusAccepted {
		t.Fatalf("restart: %d", code)
	}
	// It resumes from the sink: the status shows the committed epoch and
	// both partitions' positions once the sink is open.
	td.waitFor("beta resumed after restart", func() bool {
		in := td.info("beta")
		return in.State == StateRunning && in.Epoch > 0 && len(in.Positions) == 2
	})
	exactlyOnce(t, td.lines("beta"), 500)

	// Metrics and probes.
	resp, err := http.Get(td.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`sluice_records_in_total{pipeline="alpha"}`, `sluice_build_info{version="test"} 1`, "sluice_broker_connections"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if code := td.get("/healthz", nil); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}
	if code := td.get("/readyz", nil); code != http.StatusOK {
		t.Fatalf("/readyz: %d", code)
	}

	// Removing a file stops its pipeline.
	os.Remove(filepath.Join(td.dir, "b.yaml"))
	td.waitFor("beta gone", func() bool { return td.get("/pipelines/beta", nil) == http.StatusNotFound })

	if err := td.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

func TestDaemonRejectsDuplicateNames(t *testing.T) {
	td := startDaemon(t)
	td.write("a.yaml", pipelineYAML("same", td.out, 10, 0))
	td.waitFor("first running", func() bool { return td.info("same").State == StateRunning })
	td.write("b.yaml", pipelineYAML("same", td.out, 10, 0))
	var list []Info
	td.waitFor("second listed", func() bool { td.get("/pipelines", &list); return len(list) == 2 })
	var invalid int
	for _, in := range list {
		if in.State == StateInvalid && strings.Contains(in.Error, "already used") {
			invalid++
		}
	}
	if invalid != 1 {
		t.Fatalf("want exactly one file refused for its duplicate name: %+v", list)
	}
}

// TestDaemonStateUnderConcurrentChanges reads pipeline states through the
// API while one pipeline fails and restarts every few milliseconds, another
// is paused, resumed and restarted, and files come and go (a new file with
// a taken name makes the daemon look at the other pipeline's state). Under
// -race it catches a state read that does not take the pipeline's lock.
func TestDaemonStateUnderConcurrentChanges(t *testing.T) {
	defer func(p backoff.Policy) { restartBackoff = p }(restartBackoff)
	restartBackoff = backoff.Policy{Min: time.Millisecond, Max: 5 * time.Millisecond}
	td := startDaemon(t)
	// The file sink cannot create its directory under a regular file, so
	// this pipeline fails as soon as it opens, again and again.
	blocker := filepath.Join(t.TempDir(), "blocker")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	td.write("failing.yaml", pipelineYAML("failing", blocker, 10, 0))
	td.write("steady.yaml", pipelineYAML("steady", td.out, 1_000_000, 1000))
	td.waitFor("failing to restart", func() bool { return td.info("failing").Restarts >= 3 })

	stop := make(chan struct{})
	var wg sync.WaitGroup
	get := func(path string) {
		resp, err := http.Get(td.base + path)
		if err != nil {
			t.Error(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				get("/pipelines")
				get("/pipelines/failing")
				get("/readyz")
			}
		})
	}
	wg.Go(func() {
		for _, action := range []string{"pause", "resume", "restart", "pause", "resume", "restart"} {
			if _, _, err := td.do("POST", "/pipelines/steady/"+action, "", map[string]string{"Authorization": "Bearer " + td.token}); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	for i := range 12 {
		// Half the new files reuse a running pipeline's name, so the
		// daemon looks at that pipeline's state to decide.
		name := fmt.Sprintf("extra%d", i)
		if i%2 == 0 {
			name = "failing"
		}
		td.write(fmt.Sprintf("extra%d.yaml", i), pipelineYAML(name, td.out, 10, 0))
		if i > 0 {
			os.Remove(filepath.Join(td.dir, fmt.Sprintf("extra%d.yaml", i-1)))
		}
		time.Sleep(2 * td.d.cfg.ScanInterval)
	}
	close(stop)
	wg.Wait()
	// Between two runs (state starting) the error is cleared: wait for a
	// failed one.
	td.waitFor("the failing pipeline to keep failing and restarting", func() bool {
		in := td.info("failing")
		return in.Restarts >= 10 && strings.Contains(in.Error, "blocker")
	})
	if err := td.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

func TestNewChecksTheDirectory(t *testing.T) {
	if _, err := New(Config{PipelinesDir: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Fatal("a missing pipelines directory must be an error")
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("no pipelines directory must be an error")
	}
}

// TestDaemonReportsAndDeletesState: a pipeline with an aggregate step
// reports the size of each task's state in the API; DELETE stops it and
// removes its file and its state.
func TestDaemonReportsAndDeletesState(t *testing.T) {
	td := startDaemon(t)
	td.write("counts.yaml", fmt.Sprintf(`version: 1
name: counts
source:
  generate: {topic: counts, count: 100, partitions: 2, keys: 5}
batch: {interval: 20ms}
transforms:
  - aggregate: {key: key, functions: {n: count}}
sink:
  file: {path: %s, format: raw, roll: {per-epoch: true}}
`, filepath.Join(td.out, "counts")))
	td.waitFor("every record committed", func() bool { return td.info("counts").RecordsIn == 100 })
	// Each partition sees every one of the 5 keys: at least 5 keys per
	// task (the step may keep more of its own).
	in := td.info("counts")
	if len(in.StateSize) != 2 || in.StateSize[0].Task != 0 || in.StateSize[1].Task != 1 ||
		in.StateSize[0].Keys < 5 || in.StateSize[1].Keys < 5 || in.StateSize[0].Bytes <= 0 {
		t.Fatalf("state_size = %+v", in.StateSize)
	}
	stateDir := filepath.Join(td.d.cfg.DataDir, "state", "counts")
	if _, err := os.Stat(stateDir); err != nil {
		t.Fatalf("no state directory: %v", err)
	}

	if code, body, err := td.do("DELETE", "/pipelines/counts", "", nil); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("DELETE without the token: %d %s %v", code, body, err)
	}
	code, body, err := td.do("DELETE", "/pipelines/counts", "", map[string]string{"Authorization": "Bearer " + td.token})
	if err != nil || code != http.StatusOK {
		t.Fatalf("DELETE: %d %s %v", code, body, err)
	}
	if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
		t.Fatalf("state directory still there after DELETE: %v", err)
	}
	if _, err := os.Stat(filepath.Join(td.dir, "counts.yaml")); !os.IsNotExist(err) {
		t.Fatalf("pipeline file still there after DELETE: %v", err)
	}
	if code := td.get("/pipelines/counts", nil); code != http.StatusNotFound {
		t.Fatalf("GET after DELETE: %d, want 404", code)
	}
}
