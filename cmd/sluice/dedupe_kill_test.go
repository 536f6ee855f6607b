package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/sinks/file/filetest"
)

// TestDedupeAcrossSIGKILL runs a pipeline with a dedupe step as a real
// `sluice run` process against a `sluice broker` process, killing it with
// SIGKILL again and again while it works through a backlog in which every
// id comes two or three times: the ids it remembered are its durable
// state, committed with the output, so after the last restart every id is
// in the output exactly once (the first copy), none lost to a kill and
// none let through twice by one.
func TestDedupeAcrossSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("kills pipelines for several seconds")
	}
	const (
		partitions = 3
		ids        = 20_000
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

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("events"), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createTopic(t, cl, "events", partitions)
	// Each id two or three times, the copies spread through the backlog
	// and keyed by the id, so they share a partition (a task: dedupe's
	// state is per task).
	rng := rand.New(rand.NewPCG(16, 3))
	var order []int
	for id := range ids {
		for range 2 + rng.IntN(2) {
			order = append(order, id)
		}
	}
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	recs := make([]*kgo.Record, len(order))
	for i, id := range order {
		key := strconv.Itoa(id)
		recs[i] = &kgo.Record{Key: []byte(key), Value: fmt.Appendf(nil, `{"id":%q,"seq":%d}`, key, i)}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "out")
	spec := filepath.Join(dir, "p.yaml")
	// Small batches and per-epoch part files: many commits, each visible
	// at once, so the kills land between and inside them.
	os.WriteFile(spec, fmt.Appendf(nil, `version: 1
name: dedupe-kill
source:
  kafka: {brokers: [%q], topics: [events], start: earliest}
batch: {interval: 20ms, max-records-per-partition: 300}
transforms:
  - dedupe: {key: id, within: 1h}
sink:
  file: {path: %s, format: raw, roll: {per-epoch: true}}
`, addr, out), 0o644)
	data := filepath.Join(dir, "data")

	seen := 0
	for k := range kills {
		run := sluice(t, "run", spec, "--data", data)
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		// Killed once it has committed something of its own: each run
		// restores the state, then works on.
		waitForOutput(t, out, seen+1)
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		run.Process.Signal(syscall.SIGKILL)
		run.Wait()
		lines := filetest.Lines(t, out)
		checkIDsOnce(t, lines, len(order), false)
		seen = len(lines)
		t.Logf("kill %d: %d records out", k+1, seen)
	}
	final := sluice(t, "run", spec, "--data", data, "--idle-exit", "2s")
	if b, err := final.CombinedOutput(); err != nil {
		t.Fatalf("final run: %v\n%s", err, b)
	}
	lines := filetest.Lines(t, out)
	checkIDsOnce(t, lines, len(order), true)
	if len(lines) != ids {
		t.Fatalf("%d records out, want one per id: %d", len(lines), ids)
	}
}

// checkIDsOnce asserts no id appears twice in lines (the dedupe step's
// output), and, when complete, that every id of 0..ids-1 appears.
func checkIDsOnce(t *testing.T, lines []string, records int, complete bool) {
	t.Helper()
	seen := map[string]bool{}
	for _, l := range lines {
		var v struct {
			ID  string `json:"id"`
			Seq int    `json:"seq"`
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil || v.Seq < 0 || v.Seq >= records {
			t.Fatalf("unexpected line %q", l)
		}
		if seen[v.ID] {
			t.Fatalf("id %s let through twice", v.ID)
		}
		seen[v.ID] = true
	}
	if complete {
		for id := range len(seen) {
			if !seen[strconv.Itoa(id)] {
				t.Fatalf("id %d missing", id)
			}
		}
	}
}
