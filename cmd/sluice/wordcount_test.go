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

// TestWordCountThroughKillsAndMoves (issue 16, item 7): a running count per
// word of a keyed topic, through the aggregate step and the durable state,
// while `sluice run` is SIGKILLed three times mid-work, then runs as two
// processes with their own data directories (tasks move to the second,
// which restores their state from the changelog alone) and finally as one
// again (the tasks come back to a store that must catch up). The last count
// of each word equals a straight count of the input, and no count is
// written twice.
func TestWordCountThroughKillsAndMoves(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and moves pipelines for a while")
	}
	const (
		partitions = 4
		words      = 40
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
	// Keyed by word with Kafka's default partitioner: each word's records
	// are in one partition, so the count per task is the word's count.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("words"), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createTopic(t, cl, "words", partitions)
	want := map[string]int{}
	rng := rand.New(rand.NewPCG(16, 7))
	produce := func(n int) {
		t.Helper()
		recs := make([]*kgo.Record, n)
		for i := range recs {
			w := fmt.Sprintf("w%d", rng.IntN(words))
			want[w]++
			recs[i] = &kgo.Record{Key: []byte(w), Value: []byte("{}")}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	out := filepath.Join(dir, "out")
	spec := filepath.Join(dir, "wc.yaml")
	// Small batches: many epochs, so kills land between a changelog write,
	// a store write and a commit. A short session: a killed process's
	// tasks move after 6s.
	os.WriteFile(spec, fmt.Appendf(nil, `version: 1
name: wordcount
source:
  kafka: {brokers: [%q], topics: [words], session-timeout: 6s}
batch: {interval: 20ms, max-records-per-partition: 200}
transforms:
  - aggregate: {key: key, functions: {n: count}}
sink:
  file: {path: %q, format: raw, roll: {per-epoch: true}}
`, addr, out), 0o644)
	dataA, dataB := filepath.Join(dir, "data-a"), filepath.Join(dir, "data-b")

	produce(20_000)
	before := 0
	for k := range kills {
		run := sluice(t, "run", spec, "--data", dataA)
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		waitForOutput(t, out, before+1)
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		run.Process.Signal(syscall.SIGKILL)
		run.Wait()
		before = len(checkCounts(t, filetest.Lines(t, out), want, false))
		t.Logf("kill %d: %d words counted so far", k+1, before)
		produce(2_000)
	}

	// Two processes: tasks move to B, which has no local state.
	a := startRunner(t, "a", nil, spec, "--data", dataA)
	b := startRunner(t, "b", nil, spec, "--data", dataB)
	awaitSplit(t, partitions, a, b)
	produce(5_000)
	lines := len(filetest.Lines(t, out))
	waitForOutput(t, out, lines+1)
	b.stop(t, syscall.SIGKILL)
	a.stop(t, syscall.SIGTERM)
	produce(3_000)

	// One process drains everything: B's tasks come back to A's stores.
	final := sluice(t, "run", spec, "--data", dataA, "--idle-exit", "2s")
	if o, err := final.CombinedOutput(); err != nil {
		t.Fatalf("final run: %v\n%s", err, o)
	}
	checkCounts(t, filetest.Lines(t, out), want, true)
}

// checkCounts reads the aggregate's outputs {"key", "n"}: a word's counts
// must only grow and never repeat (a repeat is a batch counted twice);
// complete, each word's last count must equal want. It returns the last
// count of each word.
func checkCounts(t *testing.T, lines []string, want map[string]int, complete bool) map[string]int {
	t.Helper()
	last := map[string]int{}
	seen := map[string]map[int]bool{}
	for _, l := range lines {
		var v struct {
			Key string `json:"key"`
			N   int    `json:"n"`
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil || v.Key == "" || v.N <= 0 {
			t.Fatalf("unexpected line %q", l)
		}
		if seen[v.Key] == nil {
			seen[v.Key] = map[int]bool{}
		}
		if seen[v.Key][v.N] {
			t.Fatalf("%s: count %d written twice", v.Key, v.N)
		}
		seen[v.Key][v.N] = true
		last[v.Key] = max(last[v.Key], v.N)
	}
	for w, n := range last {
		if n > want[w] {
			t.Fatalf("%s: counted %d, more than the %d produced", w, n, want[w])
		}
	}
	if complete {
		for w, n := range want {
			if last[w] != n {
				t.Fatalf("%s: last count %d, want %d (a straight count of the input)", w, last[w], n)
			}
		}
	}
	return last
}
