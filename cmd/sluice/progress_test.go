package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/sluicehq/sluice/engine"
)

// jsonLines decodes a JSON log, one record a line.
func jsonLines(t *testing.T, log []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(log))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, rec)
	}
	return out
}

// TestRunProgressOffTerminal runs `sluice run` with its log in a pipe: it
// logs a progress line every --progress-every with growing totals, and its
// last line is the summary; --quiet drops the progress lines only.
func TestRunProgressOffTerminal(t *testing.T) {
	const n = 3000
	dir := t.TempDir()
	path := writePipeline(t, dir, n, 1500) // 2 s of input
	cmd := sluice(t, "run", path, "--data", filepath.Join(dir, "data"), "--idle-exit", "300ms",
		"--progress-every", "200ms", "--log-format", "json")
	log, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sluice run: %v\n%s", err, log)
	}
	recs := jsonLines(t, log)
	var progress []map[string]any
	for _, r := range recs {
		if r["msg"] == "progress" {
			progress = append(progress, r)
		}
	}
	if len(progress) < 2 {
		t.Fatalf("%d progress lines in 2 s at --progress-every 200ms:\n%s", len(progress), log)
	}
	first, last := progress[0]["records_in"].(float64), progress[len(progress)-1]["records_in"].(float64)
	if !(first < last && last <= n) || progress[0]["pipeline"] != "kill-test" {
		t.Fatalf("progress lines do not count up to %d: first %v, last %v\n%s", n, first, last, log)
	}
	sum := recs[len(recs)-1]
	if sum["msg"] != "stopped" || sum["records_in"] != float64(n) || sum["records_out"] != float64(n) ||
		sum["records_rejected"] != float64(0) || sum["epochs"].(float64) < 1 || sum["records_per_sec"].(float64) <= 0 {
		t.Fatalf("the last line is not the summary of %d records: %v", n, sum)
	}
	if took, err := time.ParseDuration(sum["took"].(string)); err != nil || took <= 0 {
		t.Fatalf("summary took %v: want a duration such as 2.1s", sum["took"])
	}
	if _, ok := sum["positions"].([]any); !ok {
		t.Fatalf("summary positions %v: want a JSON list", sum["positions"])
	}

	// Again with --quiet, after the run: nothing to read, no progress.
	cmd = sluice(t, "run", path, "--data", filepath.Join(dir, "data"), "--idle-exit", "300ms",
		"--progress-every", "50ms", "--log-format", "json", "--quiet")
	if log, err = cmd.CombinedOutput(); err != nil {
		t.Fatalf("sluice run --quiet: %v\n%s", err, log)
	}
	for _, r := range jsonLines(t, log) {
		if r["msg"] == "progress" {
			t.Fatalf("--quiet logged progress:\n%s", log)
		}
	}
	if !bytes.Contains(log, []byte(`"msg":"stopped"`)) {
		t.Fatalf("--quiet dropped the summary:\n%s", log)
	}
}

// TestRunProgressOnTerminal runs `sluice run` with its log on a pty: one
// line redrawn in place (\r, erase to the end), log lines above it, and
// the line erased before the summary.
func TestRunProgressOnTerminal(t *testing.T) {
	dir := t.TempDir()
	path := writePipeline(t, dir, 3000, 3000)
	cmd := sluice(t, "run", path, "--data", filepath.Join(dir, "data"), "--idle-exit", "300ms")
	cmd.Env = append(cmd.Env, "TERM=xterm")
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var out bytes.Buffer
	_, err = io.Copy(&out, tty) // until the child exits: EIO
	if err != nil && !errors.Is(err, syscall.EIO) {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sluice run: %v\n%q", err, out.String())
	}
	s := out.String()
	draws := strings.Count(s, "\rkill-test: ")
	stopped := strings.Index(s, "msg=stopped")
	if draws < 2 || stopped < 0 {
		t.Fatalf("want the progress line drawn at least twice, then the summary: %q", s)
	}
	// The line is erased right before the summary, and never drawn after.
	if line := strings.LastIndex(s[:stopped], "time="); line < 0 || !strings.HasSuffix(s[:line], "\r"+clearEOL) {
		t.Fatalf("the progress line is not erased before the summary: %q", s)
	}
	if strings.Contains(s[stopped:], "rec/s") {
		t.Fatalf("the progress line is drawn after the summary: %q", s[stopped:])
	}
	if !strings.Contains(s, " rec/s, ") || !strings.Contains(s, ", epoch ") {
		t.Fatalf("the progress line lacks its numbers: %q", s)
	}
}

func TestProgressLine(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tp := engine.TopicPartition{Topic: "t", Partition: 0}
	v := progressView{name: "a-very-long-pipeline-name-indeed", rate: 1234.4, totals: engine.Totals{In: 99},
		status: engine.Status{Epoch: 7, Positions: engine.Positions{tp: 40}, Ends: engine.Positions{tp: 50}, LastCommit: now.Add(-2 * time.Second)}, now: now}
	if got, want := v.line(), "a-very-long-pipelin…: 1234 rec/s, 99 in, lag 10, epoch 7, last commit 2s ago"; got != want {
		t.Fatalf("line %q, want %q", got, want)
	}
	v.status = engine.Status{}
	if got, want := v.line(), "a-very-long-pipelin…: 1234 rec/s, 99 in, lag ?, epoch 0, last commit none yet"; got != want {
		t.Fatalf("line %q, want %q", got, want)
	}

	// A log record written while the line shows: erased, the record, the
	// line again.
	var buf bytes.Buffer
	tl := &termLine{w: &buf}
	tl.draw("L1")
	tl.Write([]byte("log\n"))
	tl.clear()
	if got, want := buf.String(), "\rL1"+clearEOL+"\r"+clearEOL+"log\nL1\r"+clearEOL; got != want {
		t.Fatalf("terminal output %q, want %q", got, want)
	}
}

// TestRunWithoutFile: `sluice run` alone says what it takes.
func TestRunWithoutFile(t *testing.T) {
	out, err := sluice(t, "run").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "sluice run FILE [flags]") {
		t.Fatalf("sluice run without a file: %v, %q; want exit 1 and the usage line", err, out)
	}
}

// TestRunHTTP: `sluice run --http` serves the status page and the
// read-only API behind the daemon's Host check.
func TestRunHTTP(t *testing.T) {
	dir := t.TempDir()
	path := writePipeline(t, dir, 1_000_000, 500)
	addr := freeAddr(t)
	cmd := sluice(t, "run", path, "--data", filepath.Join(dir, "data"), "--http", addr)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	base := "http://" + addr
	var info struct {
		Name      string `json:"name"`
		State     string `json:"state"`
		RecordsIn uint64 `json:"records_in"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for info.RecordsIn == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("GET /pipelines/kill-test never showed records: %+v\n%s", info, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
		resp, err := http.Get(base + "/pipelines/kill-test")
		if err != nil {
			continue
		}
		json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
	}
	if info.State != "running" {
		t.Fatalf("state %q, want running", info.State)
	}
	get := func(method, path, host string) (int, string) {
		req, _ := http.NewRequest(method, base+path, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("GET", "/", ""); code != 200 || !strings.Contains(body, `data-name="kill-test"`) {
		t.Fatalf("GET /: %d\n%s", code, body)
	}
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		if code, body := get("GET", p, ""); code != 200 {
			t.Fatalf("GET %s: %d %s", p, code, body)
		}
	}
	if code, body := get("POST", "/pipelines/kill-test/pause", ""); code != 405 || !strings.Contains(body, `"error"`) || !strings.Contains(body, "read-only") {
		t.Fatalf("POST pause to sluice run: %d %s; want 405 saying the API is read-only", code, body)
	}
	if code, _ := get("GET", "/", "rebound.example:80"); code != http.StatusMisdirectedRequest {
		t.Fatalf("GET / with a foreign Host: %d, want 421", code)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sluice run --http must exit 0 on SIGTERM: %v\n%s", err, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
}

// TestRunProgressBesideStdoutSink: a pipeline writing its records to the
// terminal gets progress log lines, not a line redrawn among its output.
func TestRunProgressBesideStdoutSink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	spec := "version: 1\nname: to-screen\nsource:\n  generate: {count: 2000, rate: 2000}\nbatch: {interval: 50ms}\ndelivery: at-least-once\nsink:\n  stdout: {}\n"
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := sluice(t, "run", path, "--data", filepath.Join(dir, "data"), "--idle-exit", "300ms", "--progress-every", "200ms")
	cmd.Env = append(cmd.Env, "TERM=xterm")
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var out bytes.Buffer
	if _, err := io.Copy(&out, tty); err != nil && !errors.Is(err, syscall.EIO) {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sluice run: %v\n%q", err, out.String())
	}
	s := out.String()
	if strings.Contains(s, clearEOL) || !strings.Contains(s, "msg=progress pipeline=to-screen") {
		t.Fatalf("want progress log lines and no line redrawn: %q", s)
	}
}
