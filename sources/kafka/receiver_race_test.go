package kafka_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sinks/sinktest"
	"github.com/sluicehq/sluice/sources/kafka"
)

// Every goroutine of a receiver at once, for the race detector: the
// engine's intake calls Next, Backlog and Committed (reading ahead of the
// batch loop's commits), the poll loop cuts, stores and group-commits
// blocks, and franz-go's callbacks revoke and assign partitions because a
// second member joins the group and leaves it again, round after round,
// while records are produced. Lag gauges are on, so Committed reads the
// partitions too. With a write-ahead log every record is committed
// exactly once across the rebalances; without one (at-least-once) none
// is missing.
func TestReceiverConcurrentPathsUnderRebalances(t *testing.T) {
	const rounds, perChunk = 3, 300
	for _, tc := range []struct {
		name     string
		wal      bool
		delivery engine.Delivery
	}{
		{"wal", true, engine.ExactlyOnce},
		{"queue", false, engine.AtLeastOnce},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brokers := fakeCluster(t, 4)
			cfg := kafka.ReceiverConfig{
				Conn: kafka.Connection{Brokers: brokers}, Topics: []string{"events"}, Start: "earliest",
				Group: "churn", BlockInterval: 20 * time.Millisecond, Delivery: tc.delivery,
				Pipeline: "p", Logger: quiet, Metrics: kafka.NewMetrics(nil),
			}
			if tc.wal {
				cfg.WALDir = filepath.Join(t.TempDir(), "wal")
			}
			src, err := kafka.NewReceiver(cfg)
			if err != nil {
				t.Fatal(err)
			}
			mem := sinktest.NewMemory()
			sink := signalSink{MemorySink: mem.NewSink(), committed: make(chan struct{}, 1)}
			p, err := engine.New(engine.Config{Name: "p", Delivery: tc.delivery, MaxRecordsPerPartition: 25,
				Logger: quiet, Source: src, Sink: sink, Checkpoints: engine.NewFileCheckpoints(t.TempDir(), "p")})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ran := make(chan error, 1)
			go func() { ran <- p.Run(ctx) }()

			produced := 0
			for range rounds {
				produce(t, brokers, "events", produced, produced+perChunk)
				produced += perChunk
				leave := joinBriefly(t, brokers, "churn")
				produce(t, brokers, "events", produced, produced+perChunk)
				produced += perChunk
				leave()
				// The receiver has its partitions back once it has
				// committed everything produced so far.
				if !sink.awaitDistinct(mem, produced, time.Minute) {
					t.Fatalf("%d of %d records committed within a minute of the second member leaving", len(committedCounts(mem)), produced)
				}
			}
			produce(t, brokers, "events", produced, produced+perChunk)
			produced += perChunk
			if !sink.awaitDistinct(mem, produced, time.Minute) {
				t.Fatalf("%d of %d records committed within a minute", len(committedCounts(mem)), produced)
			}
			cancel()
			if err := <-ran; err != nil {
				t.Fatal(err)
			}
			seen := committedCounts(mem)
			for i := range produced {
				n := seen[fmt.Sprintf("v%d", i)]
				if n == 0 || tc.wal && n != 1 {
					t.Fatalf("v%d committed %d times", i, n)
				}
			}
		})
	}
}

// joinBriefly makes a second member join group and waits until the group
// has given it partitions (so the receiver's were revoked); the returned
// func makes it leave again (so they are assigned back). It commits
// nothing: what it was given is read by the receiver from the group's
// offsets, which the receiver committed when its partitions were revoked.
func joinBriefly(t *testing.T, brokers []string, group string) (leave func()) {
	t.Helper()
	assigned := make(chan struct{})
	var once sync.Once
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics("events"),
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, got map[string][]int32) {
			if len(got["events"]) > 0 {
				once.Do(func() { close(assigned) })
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-assigned:
	case <-time.After(30 * time.Second):
		cl.Close()
		t.Fatal("the second member was given no partition within 30s")
	}
	return cl.Close
}

// signalSink is a sinktest memory sink that says when it committed.
type signalSink struct {
	*sinktest.MemorySink
	committed chan struct{} // room for one: a commit since the last receive
}

func (s signalSink) Commit(ctx context.Context, epoch uint64, until engine.Positions) error {
	err := s.MemorySink.Commit(ctx, epoch, until)
	select {
	case s.committed <- struct{}{}:
	default:
	}
	return err
}

// committedCounts counts how often each value is in pipeline p's
// committed output.
func committedCounts(mem *sinktest.Memory) map[string]int {
	seen := map[string]int{}
	for _, r := range mem.Records("p") {
		seen[string(r.Value)]++
	}
	return seen
}

// awaitDistinct waits until n distinct values are committed; false if
// timeout passed first.
func (s signalSink) awaitDistinct(mem *sinktest.Memory, n int, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for len(committedCounts(mem)) < n {
		select {
		case <-s.committed:
		case <-deadline.C:
			return false
		}
	}
	return true
}
