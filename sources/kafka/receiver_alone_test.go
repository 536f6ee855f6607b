package kafka_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkatest"
	"github.com/sluicehq/sluice/sinks/sinktest"
	"github.com/sluicehq/sluice/sources/kafka"
)

// receiverRun is one process of a receiver-mode pipeline p writing into a
// shared in-memory sink.
type receiverRun struct {
	cancel context.CancelFunc
	done   chan error
}

func startReceiverRun(t *testing.T, src *kafka.Receiver, mem *sinktest.Memory) *receiverRun {
	t.Helper()
	p, err := engine.New(engine.Config{Name: "p", Delivery: engine.ExactlyOnce, Interval: 20 * time.Millisecond,
		MaxRecordsPerPartition: 50, Source: src, Sink: mem.NewSink(), Logger: quiet, MinBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &receiverRun{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *receiverRun) stop() error {
	r.cancel()
	err := <-r.done
	r.done <- err // stop may be called again
	return err
}

func awaitValues(t *testing.T, mem *sinktest.Memory, n int) []string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var got []string
		for _, r := range mem.Records("p") {
			got = append(got, string(r.Value))
		}
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReceiverRunsInOneProcess: a second process of a receiver-mode
// pipeline, with a write-ahead log of its own, joins the group of a
// running one. It stops with an error that says what to do, whether it
// finds the first before joining or (as if both joined at the same moment)
// at its first assignment; the first keeps running, and every record
// reaches the sink exactly once. With a sink of its own (another machine's
// file sink), the second process is refused by nothing else and commits
// nothing there. On kfake and on the built-in broker.
func TestReceiverRunsInOneProcess(t *testing.T) {
	for name, cluster := range map[string]func(*testing.T, int32) []string{"kfake": fakeCluster, "builtin": builtinCluster} {
		t.Run(name, func(t *testing.T) { testReceiverRunsInOneProcess(t, cluster) })
	}
}

func testReceiverRunsInOneProcess(t *testing.T, cluster func(*testing.T, int32) []string) {
	for _, tc := range []struct {
		name    string
		skip    bool // skip the check before joining
		ownSink bool // the second process has a sink of its own
	}{
		{"before joining", false, false},
		{"before joining, own sink", false, true},
		{"at the first assignment, own sink", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brokers := cluster(t, 4)
			mem := sinktest.NewMemory()
			produce(t, brokers, "events", 0, 400)
			first := startReceiverRun(t, receiverSource(t, brokers, filepath.Join(t.TempDir(), "wal")), mem)
			if got := awaitValues(t, mem, 400); len(got) != 400 {
				t.Fatalf("the first process committed %d of 400 records", len(got))
			}

			src := receiverSource(t, brokers, filepath.Join(t.TempDir(), "wal"))
			if tc.skip {
				kafka.SkipJoinCheck(src)
			}
			secondMem := mem
			if tc.ownSink {
				secondMem = sinktest.NewMemory()
			}
			second := startReceiverRun(t, src, secondMem)
			select {
			case err := <-second.done:
				second.done <- err
				msg := ""
				if err != nil {
					msg = err.Error()
				}
				if !strings.Contains(msg, "receiver mode runs in one process: another process of pipeline p joined group recv (member sluice-p-wal-") ||
					!strings.Contains(msg, "use mode: direct to split the pipeline into tasks") {
					t.Fatalf("the second process stopped with %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the second process did not stop")
			}

			produce(t, brokers, "events", 400, 800)
			got := awaitValues(t, mem, 800)
			select {
			case err := <-first.done:
				t.Fatalf("the first process stopped: %v", err)
			default:
			}
			if err := first.stop(); err != nil {
				t.Fatal(err)
			}
			exactlyOnce(t, got, 800)
			if tc.ownSink {
				if n := len(secondMem.Records("p")); n != 0 {
					t.Fatalf("the second process committed %d records into its sink", n)
				}
			}
		})
	}
}

// TestReceiverRestartsBesideItsDeadPredecessor: a member that names the
// receiver's own write-ahead log is a predecessor of the same process
// (killed, its session still open), not another process: the restarted
// receiver is not refused.
func TestReceiverRestartsBesideItsDeadPredecessor(t *testing.T) {
	brokers := fakeCluster(t, 4)
	mem := sinktest.NewMemory()
	walDir := filepath.Join(t.TempDir(), "wal")
	produce(t, brokers, "events", 0, 200)
	run := startReceiverRun(t, receiverSource(t, brokers, walDir), mem)
	awaitValues(t, mem, 200)
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}

	// The predecessor: a member with the log's client ID that holds on to
	// its partitions until it closes.
	id, err := os.ReadFile(filepath.Join(walDir, "member"))
	if err != nil {
		t.Fatal(err)
	}
	ghostID := "sluice-p-wal-" + strings.TrimSpace(string(id))
	ghost, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ClientID(ghostID),
		kgo.ConsumerGroup("recv"), kgo.ConsumeTopics("events"), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer ghost.Close()
	awaitGroup(t, ghost, "the predecessor alone in the group", func(g kadm.DescribedGroup) bool {
		return g.State == "Stable" && len(g.Members) == 1 && g.Members[0].ClientID == ghostID
	})
	restarted := startReceiverRun(t, receiverSource(t, brokers, walDir), mem)
	produce(t, brokers, "events", 200, 400)
	awaitGroup(t, ghost, "both members assigned", func(g kadm.DescribedGroup) bool {
		return g.State == "Stable" && len(g.Members) == 2
	})
	ghost.Close()
	got := awaitValues(t, mem, 400)
	select {
	case err := <-restarted.done:
		t.Fatalf("the restarted process stopped: %v", err)
	default:
	}
	if err := restarted.stop(); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, got, 400)
}

// awaitGroup waits until the receivers' group satisfies cond.
func awaitGroup(t *testing.T, cl *kgo.Client, what string, cond func(kadm.DescribedGroup) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		described, err := kadm.NewClient(cl).DescribeGroups(context.Background(), "recv")
		if err == nil && cond(described["recv"]) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v %v", what, described, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// builtinCluster starts the built-in broker in-process with topic "events" of
// partitions partitions.
func builtinCluster(t *testing.T, partitions int32) []string {
	return kafkatest.Builtin(t, "events", partitions)
}
