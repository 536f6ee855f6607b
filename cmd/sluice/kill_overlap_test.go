package main

import (
	"context"
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

// TestRepeatedSIGKILLWhileBatchesOverlap kills a pipeline again and again
// while a producer keeps writing and the pipeline is behind, so batches
// run back to back and the next batch is always being read (and
// transformed) while the previous one is written and committed: each kill
// lands somewhere in that overlap. The broker is its own process and
// survives. After the last restart the pipeline drains and exits on
// --idle-exit; every acknowledged record is in the output exactly once.
//
// Receiver mode is killed twice only: a restarted consumer-group member
// waits for the killed one's session to expire (franz-go's default, 45s)
// before it is given partitions.
func TestRepeatedSIGKILLWhileBatchesOverlap(t *testing.T) {
	if testing.Short() {
		t.Skip("kills pipelines for several seconds")
	}
	for mode, kills := range map[string]int{"direct": 5, "receiver": 2} {
		t.Run(mode, func(t *testing.T) { testRepeatedSIGKILL(t, mode, kills) })
	}
}

func testRepeatedSIGKILL(t *testing.T, mode string, kills int) {
	const (
		partitions = 3
		// backlog is written before the first run, so the pipeline is
		// behind from its start; the producer then goes on writing while
		// the pipeline is killed, up to maxRecords in all.
		backlog    = 100_000
		maxRecords = 160_000
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
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createTopic(t, cl, "events", partitions)

	out := filepath.Join(dir, "out")
	spec := filepath.Join(dir, "p.yaml")
	// Small batches and per-epoch part files: many commits, each visible
	// at once, and a pipeline that is behind most of the time.
	var recs []*kgo.Record
	for i := range backlog {
		recs = append(recs, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(spec, []byte(fmt.Sprintf(`version: 1
name: overlap-%s
source:
  kafka: {brokers: [%q], topics: [events], mode: %s, block-interval: 50ms}
batch: {interval: 20ms, max-records-per-partition: 200}
sink:
  file: {path: %s, format: raw, roll: {per-epoch: true}}
`, mode, addr, mode, out)), 0o644)
	data := filepath.Join(dir, "data")

	// The producer writes in the background; a value is counted only once
	// the broker acknowledged it (acks=all: fsynced).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	acked := make(chan int, 1)
	stop := make(chan struct{})
	go func() {
		n := backlog
		defer func() { acked <- n }()
		for n < maxRecords {
			select {
			case <-stop:
				return
			default:
			}
			var recs []*kgo.Record
			for i := range 200 {
				recs = append(recs, &kgo.Record{Value: []byte(strconv.Itoa(n + i))})
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Errorf("produce: %v", err)
				return
			}
			n += len(recs)
		}
	}()

	rng := rand.New(rand.NewPCG(1, uint64(len(mode))))
	for k := range kills {
		run := sluice(t, "run", spec, "--data", data)
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			waitForOutput(t, out, 1)
		}
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		run.Process.Signal(syscall.SIGKILL)
		run.Wait()
		// Nothing may be written twice, whenever the kill came.
		lines := filetest.Lines(t, out)
		checkNoDuplicates(t, lines)
		t.Logf("kill %d: %d records out", k+1, len(lines))
	}
	close(stop)
	total := <-acked

	final := sluice(t, "run", spec, "--data", data, "--idle-exit", "2s")
	if b, err := final.CombinedOutput(); err != nil {
		t.Fatalf("final run: %v\n%s", err, b)
	}
	checkExactlyOnce(t, filetest.Lines(t, out), total, true)
	t.Logf("%d records, %d kills, each once", total, kills)
}

func checkNoDuplicates(t *testing.T, lines []string) {
	t.Helper()
	seen := make(map[string]bool, len(lines))
	for _, l := range lines {
		if seen[l] {
			t.Fatalf("value %s appears twice", l)
		}
		seen[l] = true
	}
}
