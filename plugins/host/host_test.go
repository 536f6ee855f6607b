package host

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/plugins/internal/wire"
)

// testPluginPath links the test binary under testPluginName, so that
// starting it runs the test plugin.
func testPluginPath(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), testPluginName)
	if err := os.Symlink(self, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTransform(t *testing.T, cfg Config) *Transform {
	t.Helper()
	if cfg.Pipeline == "" {
		cfg.Pipeline = "p"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	tr, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func records(values ...string) []engine.Record {
	recs := make([]engine.Record, len(values))
	for i, v := range values {
		recs[i] = engine.Record{Topic: "t", Offset: int64(i), Value: []byte(v)}
	}
	return recs
}

func values(recs []engine.Record) string {
	var vs []string
	for _, r := range recs {
		vs = append(vs, string(r.Value))
	}
	return strings.Join(vs, ",")
}

type processCase struct {
	name      string
	plugin    string
	in        []engine.Record
	want      string
	rejected  string
	wantErr   string
	retryable bool
}

func TestProcess(t *testing.T) {
	tests := []processCase{
		{name: "built-in", plugin: "uppercase", in: records("a", "b"), want: "A,B"},
		{name: "executable", plugin: "test", in: records("a", "b"), want: "a!,b!"},
		{name: "empty batch", plugin: "test", in: nil, want: ""},
		{name: "rejects", plugin: "test", in: records("a", "reject", "b"), want: "a!,b!", rejected: "reject"},
		{name: "batch failure", plugin: "test", in: records("a", "fail"), wantErr: "failed the batch: failed on purpose"},
		{name: "retryable batch failure", plugin: "test", in: records("retry"), wantErr: "retry on purpose", retryable: true},
		{name: "crash", plugin: "test", in: records("crash"), wantErr: "plugin process failed", retryable: true},
	}
	for _, tt := range tests {
		for _, noShm := range []bool{false, true} {
			t.Run(tt.name+transportName(noShm), func(t *testing.T) { testProcess(t, tt, noShm) })
		}
	}
}

func transportName(noShm bool) string {
	if noShm {
		return "/messages"
	}
	return "/shared-memory"
}

func testProcess(t *testing.T, tt processCase, noShm bool) {
	p := tt.plugin
	if p == "test" {
		p = testPluginPath(t)
	}
	tr := newTransform(t, Config{Plugin: p, Name: "step", NoSharedMemory: noShm})
	out, rej, err := tr.Process(context.Background(), tt.in)
	if tt.wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
		}
		if engine.IsRetryable(err) != tt.retryable {
			t.Fatalf("retryable = %v, want %v (%v)", engine.IsRetryable(err), tt.retryable, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := values(out); got != tt.want {
		t.Errorf("out %q, want %q", got, tt.want)
	}
	var rv []engine.Record
	for _, r := range rej {
		if r.Plugin != "step" || r.Reason != "rejected on purpose" {
			t.Errorf("rejected %+v: want plugin step and the reason", r)
		}
		// Positions survive the round trip: the dead-letter headers need them.
		if r.Record.Topic != "t" || r.Record.Offset != 1 {
			t.Errorf("rejected record lost its position: %+v", r.Record)
		}
		rv = append(rv, r.Record)
	}
	if got := values(rv); got != tt.rejected {
		t.Errorf("rejected %q, want %q", got, tt.rejected)
	}
}

func TestLargeBatchIsChunked(t *testing.T) {
	tr := newTransform(t, Config{Plugin: "uppercase"})
	// Past MaxRequestBytes, so the batch needs two calls.
	big := bytes.Repeat([]byte("x"), 1<<20)
	in := make([]engine.Record, 20)
	for i := range in {
		in[i] = engine.Record{Topic: "t", Offset: int64(i), Value: big}
	}
	out, _, err := tr.Process(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) || out[19].Offset != 19 || out[19].Value[0] != 'X' {
		t.Fatalf("got %d records, last %d", len(out), out[len(out)-1].Offset)
	}
}

func TestStartErrors(t *testing.T) {
	notExec := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown built-in", Config{Plugin: "upcase"}, `"upcase" is not a built-in`},
		{"missing file", Config{Plugin: "./no/such/plugin"}, "build it first"},
		{"not executable", Config{Plugin: notExec}, "not an executable"},
		{"bad sha256", Config{Plugin: "/bin/true", SHA256: "abc"}, "want 64 hex digits"},
		{"sha256 on built-in", Config{Plugin: "uppercase", SHA256: strings.Repeat("0", 64)}, "not to the built-in"},
		{"too many workers", Config{Plugin: "uppercase", Workers: MaxWorkers + 1}, "out of range"},
		{"not a plugin", Config{Plugin: "/bin/true"}, "start plugin /bin/true"},
		{"bad settings", Config{Plugin: "uppercase", Settings: map[string]any{"x": 1}}, `unknown key "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			tt.cfg.Timeout = 10 * time.Second
			tr, err := New(context.Background(), tt.cfg)
			if err == nil {
				tr.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestSHA256(t *testing.T) {
	p := testPluginPath(t)
	self, _ := os.Executable()
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	good := hex.EncodeToString(sum[:])
	t.Run("match", func(t *testing.T) {
		tr := newTransform(t, Config{Plugin: p, SHA256: good})
		if _, _, err := tr.Process(context.Background(), records("a")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("mismatch", func(t *testing.T) {
		_, err := New(context.Background(), Config{Plugin: p, SHA256: strings.Repeat("ab", 32), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err == nil || !strings.Contains(err.Error(), "its sha256 is "+good) {
			t.Fatalf("err = %v, want the actual sum %s", err, good)
		}
	})
}

func TestCrashRestartsAndRecomputes(t *testing.T) {
	reg := prometheus.NewRegistry()
	marker := filepath.Join(t.TempDir(), "crashed")
	tr := newTransform(t, Config{
		Plugin: testPluginPath(t), Name: "step", Registerer: reg,
		Settings: map[string]any{"crash_once_marker": marker},
	})
	pid := tr.PIDs()[0]
	in := records("a", "crash-once", "b")
	_, _, err := tr.Process(context.Background(), in)
	if !engine.IsRetryable(err) {
		t.Fatalf("first attempt: err = %v, want retryable", err)
	}
	// The engine retries the same batch: it succeeds on a new process.
	out, _, err := tr.Process(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if got := values(out); got != "a!,crash-once!,b!" {
		t.Fatalf("retry out %q", got)
	}
	if tr.PIDs()[0] == pid {
		t.Error("plugin was not restarted")
	}
	if got := testutil.ToFloat64(tr.restarts); got != 1 {
		t.Errorf("sluice_plugin_restarts_total = %v, want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg, "sluice_plugin_restarts_total"); err != nil || n != 1 {
		t.Errorf("registry has %d series (%v), want 1", n, err)
	}
}

func TestHangTimesOutAndRestarts(t *testing.T) {
	tr := newTransform(t, Config{Plugin: testPluginPath(t), Timeout: 500 * time.Millisecond})
	pid := tr.PIDs()[0]
	_, _, err := tr.Process(context.Background(), records("hang"))
	if !engine.IsRetryable(err) || !strings.Contains(err.Error(), "no answer within its timeout of 500ms") {
		t.Fatalf("err = %v, want a retryable timeout", err)
	}
	waitGone(t, pid)
	out, _, err := tr.Process(context.Background(), records("ok"))
	if err != nil || values(out) != "ok!" {
		t.Fatalf("after restart: %q, %v", values(out), err)
	}
}

func TestGivesUpAfterConsecutiveFailures(t *testing.T) {
	tr := newTransform(t, Config{Plugin: testPluginPath(t), MaxFailures: 3})
	var err error
	for i := range 3 {
		_, _, err = tr.Process(context.Background(), records("crash"))
		if i < 2 && !engine.IsRetryable(err) {
			t.Fatalf("failure %d: err = %v, want retryable", i+1, err)
		}
	}
	if engine.IsRetryable(err) {
		t.Fatalf("third failure still retryable: %v", err)
	}
	for _, want := range []string{"3 failures in a row", "boom: crashing on purpose"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("final error lacks %q:\n%v", want, err)
		}
	}
	// And it stays stopped.
	if _, _, err2 := tr.Process(context.Background(), records("a")); err2 == nil {
		t.Error("Process succeeded after the final error")
	}
}

func TestPluginLogsReachHostSlog(t *testing.T) {
	var buf syncBuffer
	tr := newTransform(t, Config{
		Plugin: testPluginPath(t), Name: "my-step",
		Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if _, _, err := tr.Process(context.Background(), records("log")); err != nil {
		t.Fatal(err)
	}
	// The line arrives asynchronously through the plugin's stderr: Close
	// waits for stderr to drain.
	tr.Close()
	for _, line := range strings.Split(buf.String(), "\n") {
		if n := strings.Count(line, `"plugin":`); n > 1 {
			t.Errorf("log line has %d plugin keys: %s", n, line)
		}
	}
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.Contains(line, "hello from the plugin") {
			for _, want := range []string{`"level":"WARN"`, `"plugin":"my-step"`, `"n":7`} {
				if !strings.Contains(line, want) {
					t.Errorf("log line lacks %s: %s", want, line)
				}
			}
			return
		}
	}
	t.Fatalf("plugin log line not in host log:\n%s", buf.String())
}

// waitGone waits until pid has exited (or is a zombie awaiting its reaper).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d still running", pid)
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// Field 3 is the state; Z is a zombie: dead, not yet reaped.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(f) == 0 || f[0] != "Z"
}

func TestNoOrphansWhenHostIsKilled(t *testing.T) {
	tests := []struct{ name, mode string }{
		{"parent-death signal", "full"},
		{"parent watch fallback", "parent-watch-only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			self, _ := os.Executable()
			cmd := exec.Command(self, "-test.run=^$")
			cmd.Env = append(os.Environ(), testHostEnv+"="+tt.mode)
			cmd.Stderr = os.Stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil {
				t.Fatalf("host printed no plugin pid: %v", err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(line))
			if err != nil || pid <= 0 {
				t.Fatalf("host printed %q", line)
			}
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
			if !alive(pid) {
				t.Fatalf("plugin %d not running while the host is", pid)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			waitGone(t, pid)
		})
	}
}

func TestWorkersKeepPartitionOrder(t *testing.T) {
	tr := newTransform(t, Config{Plugin: "uppercase", Workers: 3})
	var in []engine.Record
	for i := range 3000 {
		p := int32(i % 7)
		in = append(in, engine.Record{Topic: "t", Partition: p, Offset: int64(i), Value: []byte(fmt.Sprintf("v%d", i))})
	}
	out, _, err := tr.Process(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d out, want %d", len(out), len(in))
	}
	last := map[int32]int64{}
	for _, r := range out {
		if prev, ok := last[r.Partition]; ok && r.Offset <= prev {
			t.Fatalf("partition %d: offset %d after %d", r.Partition, r.Offset, prev)
		}
		last[r.Partition] = r.Offset
		if string(r.Value) != strings.ToUpper(fmt.Sprintf("v%d", r.Offset)) {
			t.Fatalf("offset %d: value %q", r.Offset, r.Value)
		}
	}
	// Every worker got partitions: 7 partitions over 3 workers.
	parts := tr.split(in)
	for i, p := range parts {
		if len(p) == 0 {
			t.Errorf("worker %d got nothing", i)
		}
	}
	pids := tr.PIDs()
	if pids[0] == pids[1] || pids[1] == pids[2] || pids[0] == 0 {
		t.Errorf("want 3 distinct processes, got %v", pids)
	}
}

func TestPipelinedChunks(t *testing.T) {
	n := 3*pipelineChunkRecords + 17
	batch := func(special map[int]string) []engine.Record {
		in := make([]engine.Record, n)
		for i := range in {
			v := strconv.Itoa(i)
			if s, ok := special[i]; ok {
				v = s
			}
			in[i] = engine.Record{Topic: "t", Offset: int64(i), Value: []byte(v)}
		}
		return in
	}
	tests := []struct {
		name      string
		special   map[int]string
		rejected  []int64
		retryable bool
	}{
		{"in order across chunks", nil, nil, false},
		{"rejects from several chunks", map[int]string{5: "reject", pipelineChunkRecords + 1: "reject", n - 1: "reject"},
			[]int64{5, int64(pipelineChunkRecords + 1), int64(n - 1)}, false},
		{"crash in a middle chunk", map[int]string{2*pipelineChunkRecords + 3: "crash"}, nil, true},
	}
	for _, tt := range tests {
		for _, noShm := range []bool{false, true} {
			t.Run(tt.name+transportName(noShm), func(t *testing.T) {
				tr := newTransform(t, Config{Plugin: testPluginPath(t), NoSharedMemory: noShm})
				in := batch(tt.special)
				if got := len(tr.workers[0].chunks(in)); got != 4 {
					t.Fatalf("%d chunks, want 4", got)
				}
				out, rej, err := tr.Process(context.Background(), in)
				if tt.retryable {
					if !engine.IsRetryable(err) {
						t.Fatalf("err = %v, want retryable", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(out)+len(rej) != n {
					t.Fatalf("%d out + %d rejected, want %d", len(out), len(rej), n)
				}
				for i := 1; i < len(out); i++ {
					if out[i].Offset <= out[i-1].Offset {
						t.Fatalf("offset %d after %d", out[i].Offset, out[i-1].Offset)
					}
				}
				for i, r := range rej {
					if r.Record.Offset != tt.rejected[i] {
						t.Errorf("rejected[%d] is offset %d, want %d", i, r.Record.Offset, tt.rejected[i])
					}
				}
			})
		}
	}
}

func TestHangInPipelineCostsOneTimeout(t *testing.T) {
	const timeout = 700 * time.Millisecond
	tr := newTransform(t, Config{Plugin: testPluginPath(t), Timeout: timeout})
	const chunks = 10
	in := make([]engine.Record, chunks*pipelineChunkRecords)
	for i := range in {
		in[i] = engine.Record{Topic: "t", Offset: int64(i), Value: []byte("x")}
	}
	in[pipelineChunkRecords+1].Value = []byte("hang")
	start := time.Now()
	_, _, err := tr.Process(context.Background(), in)
	if !engine.IsRetryable(err) || !strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("err = %v, want a retryable timeout", err)
	}
	// Chunks queued behind the hung one are cancelled, not timed out one by
	// one (which would take about (chunks-1)*timeout).
	if d := time.Since(start); d > (chunks/2)*timeout {
		t.Fatalf("took %v for a %v timeout", d, timeout)
	}
}

func TestCloseEndsRestartBackoff(t *testing.T) {
	tr := newTransform(t, Config{Plugin: testPluginPath(t)})
	for range 3 { // backoff is now 400ms, then 800ms
		if _, _, err := tr.Process(context.Background(), records("crash")); !engine.IsRetryable(err) {
			t.Fatalf("err = %v, want retryable", err)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := tr.Process(context.Background(), records("a"))
		done <- err
	}()
	tr.Close()
	if err := <-done; err == nil {
		t.Fatal("Process succeeded on a closed transform")
	}
}

func TestPluginBehindWrapperScript(t *testing.T) {
	real := testPluginPath(t)
	// Not exec: the shell stays the plugin's parent, which the parent watch
	// must accept.
	wrapper := filepath.Join(t.TempDir(), "wrapper.sh")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\n"+real+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tr := newTransform(t, Config{Plugin: wrapper})
	// Asserting that nothing happens needs a wait: several parent polls.
	time.Sleep(3 * 200 * time.Millisecond)
	out, _, err := tr.Process(context.Background(), records("a"))
	if err != nil || values(out) != "a!" {
		t.Fatalf("through a wrapper: %q, %v", values(out), err)
	}
}

func TestSharedMemoryIsUsed(t *testing.T) {
	tests := []struct {
		noShm bool
		want  bool
	}{{false, runtime.GOOS == "linux"}, {true, false}}
	for _, tt := range tests {
		t.Run(transportName(tt.noShm), func(t *testing.T) {
			tr := newTransform(t, Config{Plugin: "uppercase", NoSharedMemory: tt.noShm})
			w := tr.workers[0]
			if got := w.region != nil && w.slots != nil; got != tt.want {
				t.Fatalf("shared memory in use = %v, want %v", got, tt.want)
			}
			out, _, err := tr.Process(context.Background(), records("a"))
			if err != nil || values(out) != "A" {
				t.Fatalf("%q, %v", values(out), err)
			}
		})
	}
}

// A plugin's own failure in one chunk leaves the process, and its shared
// memory slots, usable for the next batch.
func TestPluginFailureInPipelineKeepsProcess(t *testing.T) {
	for _, noShm := range []bool{false, true} {
		t.Run(transportName(noShm), func(t *testing.T) {
			tr := newTransform(t, Config{Plugin: testPluginPath(t), NoSharedMemory: noShm})
			pid := tr.PIDs()[0]
			in := make([]engine.Record, 3*pipelineChunkRecords)
			for i := range in {
				in[i] = engine.Record{Topic: "t", Offset: int64(i), Value: []byte("x")}
			}
			in[pipelineChunkRecords+5].Value = []byte("retry")
			if _, _, err := tr.Process(context.Background(), in); !engine.IsRetryable(err) {
				t.Fatalf("err = %v, want retryable", err)
			}
			in[pipelineChunkRecords+5].Value = []byte("x")
			for range 3 {
				out, _, err := tr.Process(context.Background(), in)
				if err != nil || len(out) != len(in) {
					t.Fatalf("after a plugin failure: %d records, %v", len(out), err)
				}
			}
			if tr.PIDs()[0] != pid {
				t.Error("the plugin was restarted after its own (retryable) failure")
			}
		})
	}
}

func TestChunksOfLargeRecordsFitSharedMemory(t *testing.T) {
	tr := newTransform(t, Config{Plugin: "uppercase"})
	w := tr.workers[0]
	if w.region == nil {
		t.Skip("no shared memory on this system")
	}
	big := bytes.Repeat([]byte("x"), 100<<10)
	in := make([]engine.Record, 100) // 10 MiB: more than two slots
	for i := range in {
		in[i] = engine.Record{Topic: "t", Offset: int64(i), Value: big}
	}
	chunks := w.chunks(in)
	for i, c := range chunks {
		if s := wire.Size(c); s > w.region.SlotBytes() {
			t.Errorf("chunk %d needs %d bytes, slot has %d", i, s, w.region.SlotBytes())
		}
	}
	if len(chunks) < 3 {
		t.Errorf("%d chunks for 10 MiB", len(chunks))
	}
	out, _, err := tr.Process(context.Background(), in)
	if err != nil || len(out) != len(in) || out[99].Value[0] != 'X' {
		t.Fatalf("%d records, %v", len(out), err)
	}
}
