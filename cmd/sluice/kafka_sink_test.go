package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/kafkatest"
	"github.com/sluicehq/sluice/sinks/file/filetest"
)

// kafkaSinkPipeline writes a pipeline that generates count values, rejects
// the ones ending in 3 (the filter expression fails on them) and writes
// the rest to the kafka sink, the rejects to a dead-letter topic.
func kafkaSinkPipeline(t *testing.T, dir, brokers string, count, rate int) string {
	t.Helper()
	spec := fmt.Sprintf(`version: 1
name: to-kafka
source:
  generate: {count: %d, partitions: 4, keys: 16, rate: %d}
batch: {interval: 20ms, max-records-per-partition: 2000}
transforms:
  - plugin: filter
    settings: {expr: 'int(value) %% 10 != 3 || fromJSON(value).x == 1'}
sink:
  kafka: {brokers: [%s], topic: out}
dead-letter: {topic: dead}
`, count, rate, brokers)
	path := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkSplit asserts out holds every value below n not ending in 3 and
// dead every one ending in 3, each at most once (exactly once when
// complete).
func checkSplit(t *testing.T, out, dead []string, n int, complete bool) {
	t.Helper()
	seen := make([]int, n)
	for _, list := range [][]string{out, dead} {
		for _, v := range list {
			i, err := strconv.Atoi(v)
			if err != nil || i < 0 || i >= n {
				t.Fatalf("unexpected value %q", v)
			}
			if seen[i]++; seen[i] > 1 {
				t.Fatalf("value %d appears twice", i)
			}
		}
	}
	for _, v := range dead {
		if v[len(v)-1] != '3' {
			t.Fatalf("value %s is a dead letter but the filter keeps it", v)
		}
	}
	for _, v := range out {
		if v[len(v)-1] == '3' {
			t.Fatalf("value %s was written but the filter rejects it", v)
		}
	}
	if complete {
		for i, c := range seen {
			if c == 0 {
				t.Fatalf("value %d is missing (%d written, %d dead of %d)", i, len(out), len(dead), n)
			}
		}
	}
}

// TestRunKafkaSinkSIGKILL kills `sluice run` writing to Kafka (franz-go's
// kfake, an independent implementation) twice, then lets it finish: every
// value is in the output or the dead-letter topic exactly once.
func TestRunKafkaSinkSIGKILL(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	dir := t.TempDir()
	const count = 40000
	spec := kafkaSinkPipeline(t, dir, brokers[0], count, 20000)
	read := func() (out, dead []string) {
		return kafkatest.Values(kafkatest.ReadCommitted(t, brokers, "out")),
			kafkatest.Values(kafkatest.ReadCommitted(t, brokers, "dead"))
	}
	for round := 1; round <= 2; round++ {
		cmd := startSluice(t, "run", spec, "--data", filepath.Join(dir, "data"))
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, dead := read()
			if len(out)+len(dead) >= round*count/4 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: only %d values after 30s", round, len(out)+len(dead))
			}
			time.Sleep(50 * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		out, dead := read()
		checkSplit(t, out, dead, count, false)
	}
	cmd := sluice(t, "run", spec, "--data", filepath.Join(dir, "data"), "--idle-exit", "500ms")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("final run: %v\n%s", err, b)
	}
	out, dead := read()
	checkSplit(t, out, dead, count, true)
	if len(dead) != count/10 {
		t.Fatalf("%d dead letters, want %d", len(dead), count/10)
	}
}

// TestRunDeadLetterTopicFromFileSinkSIGKILL reads Kafka (kfake) into the
// file sink with a dead-letter topic: the sink commits dead letters with
// each batch and a forwarder moves them to the topic. Killing sluice run
// twice loses and doubles nothing in either place.
func TestRunDeadLetterTopicFromFileSinkSIGKILL(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	const count = 12000
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]*kgo.Record, count)
	for i := range recs {
		recs[i] = &kgo.Record{Value: []byte(strconv.Itoa(i))}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()

	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	spec := filepath.Join(dir, "p.yaml")
	os.WriteFile(spec, []byte(fmt.Sprintf(`version: 1
name: to-file
source:
  kafka: {brokers: [%s], topics: [events]}
batch: {interval: 20ms, max-records-per-partition: 300}
transforms:
  - plugin: filter
    settings: {expr: 'int(value) %% 10 != 3 || fromJSON(value).x == 1'}
sink:
  file: {path: %s, format: raw, roll: {bytes: 16384, interval: 200ms}}  # small, to see output while it runs: see writePipeline
dead-letter: {topic: dead}
`, brokers[0], out)), 0o644)
	read := func() (lines, dead []string) {
		return filetest.Lines(t, out), kafkatest.Values(kafkatest.ReadCommitted(t, brokers, "dead"))
	}
	for round := 1; round <= 2; round++ {
		cmd := startSluice(t, "run", spec, "--data", filepath.Join(dir, "data"))
		waitForOutput(t, out, round*count/4)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		lines, dead := read()
		checkSplit(t, lines, dead, count, false)
	}
	cmd := sluice(t, "run", spec, "--data", filepath.Join(dir, "data"), "--idle-exit", "1s")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("final run: %v\n%s", err, b)
	}
	lines, dead := read()
	checkSplit(t, lines, dead, count, true)
	if len(dead) != count/10 {
		t.Fatalf("%d dead letters, want %d", len(dead), count/10)
	}
}

// startSluice starts the sluice CLI as a child process that is killed when
// the test ends, whichever way it ends.
func startSluice(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := sluice(t, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}
