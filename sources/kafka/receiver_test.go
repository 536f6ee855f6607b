package kafka_test

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

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
// the log that the group will hand out again; they must not be doubled,
// and the group is moved past them.
func TestReceiverSkipsWhatTheLogAlreadyHolds(t *testing.T) {
	for _, tc := range []struct {
		name      string
		committed int64 // the group's offset at the crash; -1: none yet
	}{
		{"first block", -1},
		{"later block", 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brokers := fakeCluster(t, 1)
			out, walDir := t.TempDir(), filepath.Join(t.TempDir(), "wal")
			produce(t, brokers, "events", 0, 50)
			// The log holds offsets 0..19; the group commit of the block
			// that ends at 19 never happened.
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
			if tc.committed >= 0 {
				setGroupOffset(t, brokers, "recv", "events", 0, tc.committed)
			}
			runPipelineIdle(t, receiverSource(t, brokers, walDir), out, 100000, 0, 3*time.Second)
			exactlyOnce(t, filetest.Lines(t, out), 50)
			if got := groupOffset(t, brokers, "recv", "events", 0); got != 50 {
				t.Fatalf("group offset %d after the run, want 50 (past everything the log holds)", got)
			}
		})
	}
}

// setGroupOffset commits off for a partition as an empty group's offset.
func setGroupOffset(t *testing.T, brokers []string, group, topic string, partition int32, off int64) {
	t.Helper()
	// Below the versions that name topics by id.
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MaxVersions(kversion.V3_8_0()))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.Generation = group, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = partition, off
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), adm)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode); err != nil {
		t.Fatal(err)
	}
}

// groupOffset returns a group's committed offset of a partition, -1 if none.
func groupOffset(t *testing.T, brokers []string, group, topic string, partition int32) int64 {
	t.Helper()
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	resp, err := req.RequestWith(context.Background(), adm)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			if rt.Topic == topic && p.Partition == partition {
				return p.Offset
			}
		}
	}
	return -1
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

// drain reads src and hands each batch's values to take (also empty ones),
// until take says stop or the deadline passes.
func drain(t *testing.T, src engine.Source, deadline time.Time, take func(batch []string) (stop bool)) {
	t.Helper()
	for time.Now().Before(deadline) {
		recs, until, err := src.Next(context.Background(), engine.Limits{Wait: 100 * time.Millisecond})
		if err != nil {
			t.Error(err)
			return
		}
		if err := src.Committed(context.Background(), until); err != nil {
			t.Error(err)
			return
		}
		batch := make([]string, 0, len(recs))
		for _, r := range recs {
			batch = append(batch, string(r.Value))
		}
		if take(batch) {
			return
		}
	}
	t.Error("deadline passed while reading")
}

// Two receivers of one group, each with its own write-ahead log: the
// second joins while records are being produced, so partitions move from
// the first to it mid-stream, and later it leaves and they move back.
// Across both handovers every record is logged by exactly one of them: the
// member giving a partition up has committed what its log holds and holds
// nothing polled but not logged. (Two logs in a group are refused,
// receiver_alone.go; the test lets them share it to check the handover
// itself, which any rebalance goes through.)
func TestReceiverRebalanceHandsOverExactlyWhatTheLogHolds(t *testing.T) {
	brokers := fakeCluster(t, 4)
	a := receiverSource(t, brokers, filepath.Join(t.TempDir(), "wal-a"))
	b := receiverSource(t, brokers, filepath.Join(t.TempDir(), "wal-b"))
	kafka.ShareGroup(a)
	kafka.ShareGroup(b)
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)

	var (
		mu       sync.Mutex
		seen     = map[string]int{}
		byB      int
		progress = make(chan struct{}, 1)
	)
	note := func(batch []string, isB bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, v := range batch {
			seen[v]++
		}
		if isB {
			byB += len(batch)
		}
		select {
		case progress <- struct{}{}:
		default:
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for {
			mu.Lock()
			ok := cond()
			mu.Unlock()
			if ok {
				return
			}
			select {
			case <-progress:
			case <-time.After(time.Until(deadline)):
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	read := func(src *kafka.Receiver, isB bool, stop chan struct{}, wg *sync.WaitGroup) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			drain(t, src, deadline, func(batch []string) bool {
				note(batch, isB)
				select {
				case <-stop:
					return true
				default:
					return false
				}
			})
		}()
	}

	produce(t, brokers, "events", 0, 1000)
	if err := a.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	stopA, stopB := make(chan struct{}), make(chan struct{})
	var wgA, wgB sync.WaitGroup
	read(a, false, stopA, &wgA)
	waitFor("the first member's records", func() bool { return len(seen) > 0 })

	// The second member joins while a producer keeps writing, until it
	// has read records of its own.
	if err := b.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	read(b, true, stopB, &wgB)
	produced := 1000
	for {
		mu.Lock()
		joined := byB > 0
		mu.Unlock()
		if joined {
			break
		}
		if produced >= 30000 || time.Now().After(deadline) {
			t.Fatalf("the second member read nothing while %d records were produced", produced)
		}
		produce(t, brokers, "events", produced, produced+100)
		produced += 100
	}
	waitFor("every record after the join", func() bool { return len(seen) >= produced })

	// The second member leaves; its partitions go back to the first.
	close(stopB)
	wgB.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	produce(t, brokers, "events", produced, produced+1000)
	produced += 1000
	waitFor("every record after the leave", func() bool { return len(seen) >= produced })
	close(stopA)
	wgA.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(seen) != produced {
		t.Fatalf("%d distinct records delivered, want %d", len(seen), produced)
	}
	for v, n := range seen {
		if n != 1 {
			t.Fatalf("%s delivered %d times across the rebalances", v, n)
		}
	}
	t.Logf("%d records, %d of them through the second member", produced, byB)
}

// start: latest reads only what is produced after the group first gets
// the partitions; nothing older.
func TestReceiverStartLatest(t *testing.T) {
	brokers := fakeCluster(t, 2)
	produce(t, brokers, "events", 0, 100)
	src, err := kafka.NewReceiver(kafka.ReceiverConfig{
		Conn: kafka.Connection{Brokers: brokers}, Topics: []string{"events"}, Start: "latest",
		Group: "latest", BlockInterval: 50 * time.Millisecond, WALDir: filepath.Join(t.TempDir(), "wal"),
		Delivery: engine.ExactlyOnce, Pipeline: "p", Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// When the group starts reading is not visible from outside: produce
	// one new record per round until some come out.
	next := 100
	drain(t, src, time.Now().Add(30*time.Second), func(batch []string) bool {
		for _, v := range batch {
			if n, _ := strconv.Atoi(v[1:]); n < 100 {
				t.Fatalf("start: latest delivered %s, produced before the receiver started", v)
			}
		}
		if len(batch) > 0 {
			return true
		}
		produce(t, brokers, "events", next, next+2)
		next += 2
		return false
	})
}

// max-rate caps each partition at max-rate x block-interval records per
// block; partitions paused at their cap lose nothing and double nothing.
func TestReceiverMaxRate(t *testing.T) {
	brokers := fakeCluster(t, 2)
	produce(t, brokers, "events", 0, 200)
	src, err := kafka.NewReceiver(kafka.ReceiverConfig{
		Conn: kafka.Connection{Brokers: brokers}, Topics: []string{"events"}, Start: "earliest",
		Group: "rate", BlockInterval: 50 * time.Millisecond, MaxRate: 200, // 10 per partition and block
		WALDir: filepath.Join(t.TempDir(), "wal"), Delivery: engine.ExactlyOnce, Pipeline: "p", Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := src.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var got []string
	drain(t, src, time.Now().Add(30*time.Second), func(batch []string) bool {
		got = append(got, batch...)
		return len(got) >= 200
	})
	// 100 records per partition at 10 per block interval: ten intervals,
	// the last of which may hand its records out as soon as they are
	// polled (a waiting batch cuts its block early), so at least nine.
	if took := time.Since(began); took < 450*time.Millisecond {
		t.Fatalf("200 records in %v; max-rate 200/s per partition at 10 records per 50ms needs 450ms", took)
	}
	exactlyOnce(t, got, 200)
}
