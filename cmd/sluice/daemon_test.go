package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/sinks/file/filetest"
)

// TestDaemonSubprocess runs `sluice daemon` on a directory with a Kafka
// pipeline, produces to its embedded broker, reads the API, pauses and
// resumes the pipeline with the token it generated, and stops it with
// SIGTERM: it exits 0 with every record written once, having logged where
// the token is and never the token, and last that it stopped.
func TestDaemonSubprocess(t *testing.T) {
	dir := t.TempDir()
	pdir := filepath.Join(dir, "pipelines")
	os.MkdirAll(pdir, 0o755)
	out := filepath.Join(dir, "out")
	os.WriteFile(filepath.Join(pdir, "events.yaml"), []byte(fmt.Sprintf(`version: 1
name: events-to-file
source:
  kafka: {brokers: [builtin], topics: [events]}
batch: {interval: 50ms}
sink:
  file: {path: %s, format: raw, roll: {bytes: 16384, interval: 200ms}}  # small, to see output while it runs: see writePipeline
`, out)), 0o644)
	brokerAddr, httpAddr := freeAddr(t), freeAddr(t)
	cmd := sluice(t, "daemon", "--pipelines", pdir, "--data", filepath.Join(dir, "data"),
		"--broker-listen", brokerAddr, "--http", httpAddr)
	var stderr bytes.Buffer // read once it exited
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitForBroker(t, brokerAddr)

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokerAddr), kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createTopic(t, cl, "events", 2)
	var recs []*kgo.Record
	for i := range 1000 {
		recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(i % 10)), Value: []byte(strconv.Itoa(i))})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(filetest.Lines(t, out)) < 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 1000 records written", len(filetest.Lines(t, out)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + httpAddr + "/pipelines/events-to-file")
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		State string `json:"state"`
		Epoch uint64 `json:"epoch"`
	}
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if info.State != "running" || info.Epoch == 0 {
		t.Fatalf("GET /pipelines/events-to-file: %+v", info)
	}

	tokenFile := filepath.Join(dir, "data", "http-token")
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	post := func(action, token string) int {
		req, _ := http.NewRequest("POST", "http://"+httpAddr+"/pipelines/events-to-file/"+action, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("pause", ""); code != http.StatusUnauthorized {
		t.Fatalf("pause without the token: %d, want 401", code)
	}
	for _, action := range []string{"pause", "resume"} {
		if code := post(action, strings.TrimSpace(string(token))); code != http.StatusAccepted {
			t.Fatalf("%s with the token: %d, want 202", action, code)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sluice daemon must exit 0 on SIGTERM: %v\n%s", err, stderr.String())
	}
	if log := stderr.String(); !strings.Contains(log, tokenFile) || strings.Contains(log, strings.TrimSpace(string(token))) {
		t.Fatalf("the log must name the token file %s and never hold the token:\n%s", tokenFile, log)
	}
	if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); !strings.Contains(lines[len(lines)-1], "msg=stopped") {
		t.Fatalf("the daemon's last log line must say it stopped, not %q", lines[len(lines)-1])
	}
	checkExactlyOnce(t, filetest.Lines(t, out), 1000, true)
}

// A daemon pipeline whose topic does not exist yet waits for it, saying
// once which topic and the command that creates it, instead of failing
// batch after batch; once the topic is created it runs.
func TestDaemonWaitsForTopicCreatedLater(t *testing.T) {
	dir := t.TempDir()
	pdir := filepath.Join(dir, "pipelines")
	os.MkdirAll(pdir, 0o755)
	out := filepath.Join(dir, "out")
	os.WriteFile(filepath.Join(pdir, "later.yaml"), []byte(fmt.Sprintf(`version: 1
name: later
source:
  kafka: {brokers: [builtin], topics: [later]}
batch: {interval: 50ms}
sink:
  file: {path: %s, format: raw, roll: {bytes: 16384, interval: 200ms}}
`, out)), 0o644)
	brokerAddr := freeAddr(t)
	cmd := sluice(t, "daemon", "--pipelines", pdir, "--data", filepath.Join(dir, "data"),
		"--broker-listen", brokerAddr, "--http", "127.0.0.1:0")
	// A file, so the log can be read while the daemon writes it.
	logPath := filepath.Join(dir, "log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	readLog := func() string {
		b, _ := os.ReadFile(logPath)
		return string(b)
	}
	hint := "sluice topic create later --partitions N --bootstrap " + brokerAddr
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(readLog(), hint) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon never said which topic it waits for:\n%s", readLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, err := runTool(t, brokerAddr, "", "topic", "create", "later", "--partitions", "2"); err != nil {
		t.Fatalf("topic create: %v %s", err, out)
	}
	var lines strings.Builder
	const n = 200
	for i := range n {
		fmt.Fprintln(&lines, i)
	}
	if out, err := runTool(t, brokerAddr, lines.String(), "produce", "--topic", "later"); err != nil {
		t.Fatalf("produce: %v %s", err, out)
	}
	deadline = time.Now().Add(30 * time.Second)
	for len(filetest.Lines(t, out)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d records written:\n%s", len(filetest.Lines(t, out)), n, readLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sluice daemon must exit 0 on SIGTERM: %v\n%s", err, readLog())
	}
	checkExactlyOnce(t, filetest.Lines(t, out), n, true)
	log := readLog()
	if c := strings.Count(log, hint); c != 1 {
		t.Errorf("the hint is logged %d times, want once:\n%s", c, log)
	}
	if strings.Contains(log, "batch failed") || strings.Contains(log, "restarting after a pause") {
		t.Errorf("a missing topic still fails the pipeline:\n%s", log)
	}
	if !strings.Contains(log, "source ready") {
		t.Errorf("the log does not say the source became ready:\n%s", log)
	}
}
