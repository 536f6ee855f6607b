package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/sinks/file/filetest"
)

// runAndWait runs sluice to its end (bounded, so a hang fails the test)
// and returns its exit code and combined output.
func runAndWait(t *testing.T, limit time.Duration, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("sluice %v did not end within %s:\n%s", args, limit, out)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func kafkaPipeline(t *testing.T, dir, brokers, topic, mode string) string {
	t.Helper()
	path := filepath.Join(dir, "p.yaml")
	spec := fmt.Sprintf(`version: 1
name: failfast
source:
  kafka: {brokers: [%s], topics: [%s], mode: %s, block-interval: 50ms}
batch: {interval: 50ms}
sink:
  file: {path: %s, format: raw}
`, brokers, topic, mode, filepath.Join(dir, "out"))
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// With --idle-exit a run whose brokers do not answer used to retry for
// ever; it now exits 1 after --open-timeout, naming the setting to check,
// and says it is waiting once rather than per retry.
func TestRunIdleExitGivesUpOnUnreachableBrokers(t *testing.T) {
	dir := t.TempDir()
	spec := kafkaPipeline(t, dir, freeAddr(t), "events", "direct") // nothing listens there
	code, out := runAndWait(t, time.Minute, "run", spec, "--data", filepath.Join(dir, "data"), "--idle-exit", "1s", "--open-timeout", "2s")
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	if !strings.Contains(out, "the source could not be opened for 2s (--open-timeout): cannot reach the brokers") ||
		!strings.Contains(out, "check source.kafka.brokers") {
		t.Errorf("the error does not say what to check:\n%s", out)
	}
	if n := strings.Count(out, "waiting for the source"); n != 1 {
		t.Errorf("%d waiting lines, want 1:\n%s", n, out)
	}
}

// A topic that does not exist is reported once with the command that
// creates it; with --idle-exit the run gives up after --open-timeout.
func TestRunIdleExitMissingTopic(t *testing.T) {
	dir := t.TempDir()
	spec := kafkaPipeline(t, dir, "builtin", "evnets", "direct")
	code, out := runAndWait(t, time.Minute, "run", spec, "--data", filepath.Join(dir, "data"), "--broker-listen", "127.0.0.1:0",
		"--idle-exit", "1s", "--open-timeout", "2s")
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	// The broker listens on a port of its own, which the command names.
	if n := len(regexp.MustCompile(`topic evnets does not exist; create it \(sluice topic create evnets --partitions N --bootstrap 127\.0\.0\.1:\d+\) or fix source\.kafka\.topics`).FindAllString(out, -1)); n != 2 {
		t.Errorf("the missing topic is named %d times, want once in the log and once in the error:\n%s", n, out)
	}
	if strings.Contains(out, "batch failed") {
		t.Errorf("a missing topic still fails batch after batch:\n%s", out)
	}
}

// The README's order: the pipeline starts before its topic exists. It
// waits, quietly, and reads what is produced once the topic is there.
func TestRunWaitsForTopicCreatedLater(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	spec := kafkaPipeline(t, dir, "builtin", "lines", "direct")
	cmd := sluice(t, "run", spec, "--data", filepath.Join(dir, "data"), "--broker-listen", addr, "--idle-exit", "2s")
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitForBroker(t, addr)
	if out, err := runTool(t, addr, "", "topic", "create", "lines", "--partitions", "3"); err != nil {
		t.Fatalf("topic create: %v %s", err, out)
	}
	var lines strings.Builder
	const n = 300
	for i := range n {
		fmt.Fprintln(&lines, i)
	}
	if out, err := runTool(t, addr, lines.String(), "produce", "--topic", "lines"); err != nil {
		t.Fatalf("produce: %v %s", err, out)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	checkExactlyOnce(t, filetest.Lines(t, filepath.Join(dir, "out")), n, true)
	if strings.Count(log.String(), "waiting for the source") > 1 || strings.Contains(log.String(), "batch failed") {
		t.Errorf("waiting for the topic was not one line:\n%s", log.String())
	}
}

// Receiver mode with a short --idle-exit and records already waiting: the
// run must not end before the group join hands it partitions (the probe
// that exited with 0 written).
func TestRunReceiverIdleExitWaitsForAssignment(t *testing.T) {
	dir := t.TempDir()
	addr, _ := startBroker(t, filepath.Join(dir, "broker"))
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("events"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	createTopic(t, cl, "events", 4)
	const n = 20_000
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Value: []byte(strconv.Itoa(i))}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	spec := kafkaPipeline(t, dir, addr, "events", "receiver")
	code, out := runAndWait(t, 2*time.Minute, "run", spec, "--data", filepath.Join(dir, "data"), "--idle-exit", "300ms")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	checkExactlyOnce(t, filetest.Lines(t, filepath.Join(dir, "out")), n, true)
}
