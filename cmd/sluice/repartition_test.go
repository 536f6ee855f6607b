package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/sinks/file/filetest"
)

// TestRepartitionSIGKILL kills a `sluice run` of a pipeline cut by a
// repartition step three times while it is behind: each kill lands in one
// of its two stages' batches (reading the source, writing the internal
// topic, reading it back, writing the files). After the last restart it
// drains and exits on --idle-exit; every record is in the output exactly
// once.
func TestRepartitionSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("kills pipelines for several seconds")
	}
	const (
		partitions = 3
		records    = 30_000
		kills      = 3
	)
	dir := t.TempDir()
	addr := freeAddr(t)
	broker := sluice(t, "broker", "--data", filepath.Join(dir, "broker"), "--listen", addr)
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Process.Kill(); broker.Wait() })
	waitForBroker(t, addr)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("events"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createTopic(t, cl, "events", partitions)
	var recs []*kgo.Record
	for i := range records {
		recs = append(recs, &kgo.Record{Value: fmt.Appendf(nil, `{"user":"u%d","i":%d}`, i%101, i)})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "out")
	spec := filepath.Join(dir, "p.yaml")
	// Small batches and per-epoch part files: many commits in both stages,
	// each visible at once.
	os.WriteFile(spec, fmt.Appendf(nil, `version: 1
name: rekeyed
source:
  kafka: {brokers: [%q], topics: [events]}
batch: {interval: 20ms, max-records-per-partition: 300}
transforms:
  - repartition: {key: user}
sink:
  file: {path: %s, format: raw, roll: {per-epoch: true}}
`, addr, out), 0o644)
	data := filepath.Join(dir, "data")

	rng := rand.New(rand.NewPCG(3, 16))
	before := 0
	for k := range kills {
		run := sluice(t, "run", spec, "--data", data)
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		// Killed while it works: once it wrote more than before.
		waitForOutput(t, out, before+1)
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		run.Process.Signal(syscall.SIGKILL)
		run.Wait()
		before = checkRekeyedOnce(t, filetest.Lines(t, out), records, false)
		t.Logf("kill %d: %d records out", k+1, before)
	}
	final := sluice(t, "run", spec, "--data", data, "--idle-exit", "2s")
	if b, err := final.CombinedOutput(); err != nil {
		t.Fatalf("final run: %v\n%s", err, b)
	}
	checkRekeyedOnce(t, filetest.Lines(t, out), records, true)
}

// checkRekeyedOnce asserts lines, JSON records {"user", "i"}, hold each i
// of 0..n-1 at most once (exactly once when complete), and returns how
// many they hold.
func checkRekeyedOnce(t *testing.T, lines []string, n int, complete bool) int {
	t.Helper()
	seen := make([]bool, n)
	for _, l := range lines {
		var v struct {
			User string
			I    int
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil || v.I < 0 || v.I >= n || v.User != fmt.Sprintf("u%d", v.I%101) {
			t.Fatalf("unexpected line %q", l)
		}
		if seen[v.I] {
			t.Fatalf("record %d appears twice", v.I)
		}
		seen[v.I] = true
	}
	if complete {
		for i, ok := range seen {
			if !ok {
				t.Fatalf("record %d is missing (%d of %d present)", i, len(lines), n)
			}
		}
	}
	return len(lines)
}
