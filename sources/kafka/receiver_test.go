package kafka_test

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/wal"
	"github.com/sluicehq/sluice/sinks/file/filetest"
	"github.com/sluicehq/sluice/sources/kafka"
)

func receiverSource(t *testing.T, brokers []string, walDir string) *kafka.Receiver {
	t.Helper()
	src, err := kafka.NewReceiver(kafka.ReceiverConfig{
		Conn: kafka.Connection{Brokers: brokers}, Topics: []string{"events"}, Start: "earliest",
		Group: "recv", BlockInterval: 50 * time.Millisecond, WALDir: walDir,
		Delivery: engine.ExactlyOnce, Pipeline: "p", Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestReceiverWithWALAgainstKfakeWithRestarts(t *testing.T) {
	brokers := fakeCluster(t, 3)
	out, walDir := t.TempDir(), filepath.Join(t.TempDir(), "wal")
	produce(t, brokers, "events", 0, 2000)
	runPipeline(t, receiverSource(t, brokers, walDir), out, 100, 3)
	got := len(filetest.Lines(t, out))
	if got == 0 || got >= 2000 {
		t.Fatalf("after a stop at epoch 3: %d records", got)
	}
	produce(t, brokers, "events", 2000, 4000)
	// A new group member needs a join and a sync before its first fetch.
	runPipelineIdle(t, receiverSource(t, brokers, walDir), out, 100000, 0, 3*time.Second)
	exactlyOnce(t, filetest.Lines(t, out), 4000)
	// The log is trimmed to what the sink has not committed.
	w, err := wal.Open(walDir)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if start, end := w.Bounds(); end != 4000 || start > end {
		t.Fatalf("write-ahead log bounds %d..%d", start, end)
	}
}

// A crash between a block's fsync and its group commit leaves records in
// the log that the group will hand out again; they must not be doubled.
func TestReceiverSkipsWhatTheLogAlreadyHolds(t *testing.T) {
	brokers := fakeCluster(t, 1)
	out, walDir := t.TempDir(), filepath.Join(t.TempDir(), "wal")
	produce(t, brokers, "events", 0, 50)
	w, err := wal.Open(walDir)
	if err != nil {
		t.Fatal(err)
	}
	var logged []engine.Record
	for i := range 20 {
		logged = append(logged, engine.Record{Topic: "events", Partition: 0, Offset: int64(i), Value: []byte("v" + strconv.Itoa(i))})
	}
	if _, err := w.Append(logged); err != nil {
		t.Fatal(err)
	}
	w.Close()
	runPipelineIdle(t, receiverSource(t, brokers, walDir), out, 100000, 0, 3*time.Second)
	exactlyOnce(t, filetest.Lines(t, out), 50)
}

func TestReceiverWithoutWALRefusesExactlyOnce(t *testing.T) {
	_, err := kafka.NewReceiver(kafka.ReceiverConfig{Topics: []string{"t"}, Group: "g", Delivery: engine.ExactlyOnce})
	if err == nil {
		t.Fatal("receiver without a write-ahead log must refuse exactly-once")
	}
}

func TestReceiverWithoutWALAtLeastOnce(t *testing.T) {
	brokers := fakeCluster(t, 2)
	produce(t, brokers, "events", 0, 500)
	src, err := kafka.NewReceiver(kafka.ReceiverConfig{
		Conn: kafka.Connection{Brokers: brokers}, Topics: []string{"events"}, Start: "earliest",
		Group: "nowal", BlockInterval: 50 * time.Millisecond, Delivery: engine.AtLeastOnce, Pipeline: "p", Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := src.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var all []engine.Record
	var until engine.Positions
	deadline := time.Now().Add(20 * time.Second)
	for len(all) < 500 && time.Now().Before(deadline) {
		recs, u, err := src.Next(ctx, engine.Limits{Wait: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		all, until = append(all, recs...), u
	}
	if len(all) != 500 {
		t.Fatalf("read %d of 500", len(all))
	}
	if until[engine.TopicPartition{Topic: "events", Partition: 0}] != 250 {
		t.Fatalf("positions are the next Kafka offsets: %v", until)
	}
	if err := src.Committed(ctx, until); err != nil {
		t.Fatal(err)
	}
	src.Close()
}

func TestReceiverReportsLagPerPartition(t *testing.T) {
	brokers := fakeCluster(t, 2)
	produce(t, brokers, "events", 0, 100)
	m := kafka.NewMetrics(nil)
	src, err := kafka.NewReceiver(kafka.ReceiverConfig{
		Conn: kafka.Connection{Brokers: brokers}, Topics: []string{"events"}, Start: "earliest",
		Group: "lag", BlockInterval: 50 * time.Millisecond, WALDir: filepath.Join(t.TempDir(), "wal"),
		Delivery: engine.ExactlyOnce, Pipeline: "p", Logger: quiet, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := src.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var got int
	var until engine.Positions
	for got < 60 {
		recs, u, err := src.Next(ctx, engine.Limits{MaxRecords: 60 - got, Wait: 5 * time.Second})
		if err != nil || len(recs) == 0 {
			t.Fatalf("read %d of 60: %v", got, err)
		}
		got, until = got+len(recs), u
	}
	if err := src.Committed(ctx, until); err != nil {
		t.Fatal(err)
	}
	lag0 := testutil.ToFloat64(m.Lag.WithLabelValues("p", "events", "0"))
	lag1 := testutil.ToFloat64(m.Lag.WithLabelValues("p", "events", "1"))
	if lag0+lag1 != 40 {
		t.Fatalf("lag %v + %v, want 40 records not yet handed to the sink", lag0, lag1)
	}
}

func TestReceiverPatternPicksUpNewTopics(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "logs-a"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	produce(t, brokers, "logs-a", 0, 10)
	src, err := kafka.NewReceiver(kafka.ReceiverConfig{
		Conn: kafka.Connection{Brokers: brokers}, Pattern: "logs-.*", Start: "earliest",
		Group: "pat", BlockInterval: 50 * time.Millisecond, WALDir: filepath.Join(t.TempDir(), "wal"),
		Delivery: engine.ExactlyOnce, Pipeline: "p", Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	kafka.SetPatternRefresh(src, 100*time.Millisecond)
	out := t.TempDir()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The topic appears while the pipeline runs; the receiver restarts
		// itself to read it (the engine reopens it from the sink).
		time.Sleep(time.Second)
		if err := c.CreateTopic("logs-b", 1, nil); err != nil {
			t.Error(err)
			return
		}
		produce(t, brokers, "logs-b", 10, 20)
	}()
	runPipelineIdle(t, src, out, 100000, 0, 6*time.Second)
	<-done
	exactlyOnce(t, filetest.Lines(t, out), 20)
}

// A topic written by transactional producers (sluice's own Kafka sink
// among them) holds aborted transactions; a receiver-mode pipeline must
// deliver exactly the committed records, no aborted one and no marker.
func TestReceiverReadsOnlyCommittedTransactions(t *testing.T) {
	brokers := fakeCluster(t, 1)
	produceTransactions(t, brokers)
	src := receiverSource(t, brokers, filepath.Join(t.TempDir(), "wal"))
	ctx := context.Background()
	if err := src.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// v14 is the last committed record: once it is out, everything before
	// it that the receiver delivers is out too.
	var got []string
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Contains(got, "v14") && time.Now().Before(deadline) {
		recs, _, err := src.Next(ctx, engine.Limits{Wait: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			got = append(got, string(r.Value))
		}
	}
	if !slices.Equal(got, committedValues) {
		t.Fatalf("receiver delivered %q, want exactly the committed %q", got, committedValues)
	}
}
