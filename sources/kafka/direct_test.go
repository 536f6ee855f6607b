package kafka_test

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sinks/file"
	"github.com/sluicehq/sluice/sinks/file/filetest"
	"github.com/sluicehq/sluice/sources/kafka"
)

var quiet = slog.New(slog.DiscardHandler)

// fakeCluster starts franz-go's kfake, an independent Kafka implementation,
// with topic "events" of partitions partitions.
func fakeCluster(t *testing.T, partitions int32) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// produce writes values from..to-1 as "v<i>", keyed so they spread over
// partitions, with acks=all.
func produce(t *testing.T, brokers []string, topic string, from, to int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Key: []byte("k" + strconv.Itoa(i%7)), Value: []byte("v" + strconv.Itoa(i))})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func directSource(t *testing.T, brokers []string, group string) *kafka.Direct {
	t.Helper()
	src, err := kafka.NewDirect(kafka.DirectConfig{
		Conn: kafka.Connection{Brokers: brokers}, Topics: []string{"events"},
		Start: "earliest", Group: group, Pipeline: "p", Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// runPipeline runs source → file sink until idle, or until stopAfter
// batches when stopAfter > 0.
func runPipeline(t *testing.T, src engine.Source, out string, maxPerPartition int, stopAfter uint64) {
	t.Helper()
	runPipelineIdle(t, src, out, maxPerPartition, stopAfter, 300*time.Millisecond)
}

// runPipelineIdle is runPipeline with the idle time after which it stops.
func runPipelineIdle(t *testing.T, src engine.Source, out string, maxPerPartition int, stopAfter uint64, idle time.Duration) {
	t.Helper()
	sink, err := file.New(file.Config{Path: out, Format: "raw"}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var watch engine.Sink = sink
	if stopAfter > 0 {
		watch = stopSink{Sink: sink, after: stopAfter, cancel: cancel}
	}
	p, err := engine.New(engine.Config{Name: "p", Delivery: engine.ExactlyOnce,
		MaxRecordsPerPartition: maxPerPartition, IdleExit: idle,
		Logger: quiet, Source: src, Sink: watch})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// stopSink stops the pipeline (as Ctrl-C would) once epoch `after` commits.
type stopSink struct {
	engine.Sink
	after  uint64
	cancel func()
}

func (s stopSink) Commit(ctx context.Context, epoch uint64, until engine.Positions) error {
	err := s.Sink.Commit(ctx, epoch, until)
	if epoch >= s.after {
		s.cancel()
	}
	return err
}

func exactlyOnce(t *testing.T, got []string, n int) {
	t.Helper()
	sort.Strings(got)
	want := make([]string, n)
	for i := range n {
		want[i] = "v" + strconv.Itoa(i)
	}
	sort.Strings(want)
	if len(got) != n {
		t.Fatalf("%d records out, want %d", len(got), n)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("output differs at %d: %q vs %q", i, got[i], want[i])
		}
	}
}

func TestDirectAgainstKfakeWithRestarts(t *testing.T) {
	brokers := fakeCluster(t, 3)
	out := t.TempDir()
	produce(t, brokers, "events", 0, 3000)
	// Stop after two small batches, as a Ctrl-C would, then produce more.
	runPipeline(t, directSource(t, brokers, "g"), out, 100, 2)
	if n := len(filetest.Lines(t, out)); n != 600 {
		t.Fatalf("after 2 batches of 3x100: %d records", n)
	}
	produce(t, brokers, "events", 3000, 5000)
	runPipeline(t, directSource(t, brokers, "g"), out, 700, 0)
	exactlyOnce(t, filetest.Lines(t, out), 5000)
}

func TestDirectStartLatestOnlyWhenNothingCommitted(t *testing.T) {
	brokers := fakeCluster(t, 2)
	produce(t, brokers, "events", 0, 100)
	src, _ := kafka.NewDirect(kafka.DirectConfig{Conn: kafka.Connection{Brokers: brokers},
		Topics: []string{"events"}, Start: "latest", Pipeline: "p", Logger: quiet})
	ctx := context.Background()
	if err := src.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	recs, until, err := src.Next(ctx, engine.Limits{})
	if err != nil || len(recs) != 0 {
		t.Fatalf("start latest read %d old records (err %v)", len(recs), err)
	}
	if until[engine.TopicPartition{Topic: "events", Partition: 0}] != 50 {
		t.Fatalf("latest positions: %v", until)
	}
	// With positions from a sink, the policy does not apply.
	src2 := directSource(t, brokers, "")
	if err := src2.Open(ctx, engine.Positions{{Topic: "events", Partition: 0}: 40, {Topic: "events", Partition: 1}: 50}); err != nil {
		t.Fatal(err)
	}
	recs, _, _ = src2.Next(ctx, engine.Limits{})
	if len(recs) != 10 || recs[0].Offset != 40 {
		t.Fatalf("resumed read: %d records from offset %d", len(recs), recs[0].Offset)
	}
}

func TestDirectDataLoss(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	produce(t, brokers, "events", 0, 100)
	if err := c.DeleteRecords("events", 0, 60); err != nil {
		t.Fatal(err)
	}
	at10 := engine.Positions{{Topic: "events", Partition: 0}: 10}
	src := directSource(t, brokers, "")
	src.Open(context.Background(), at10)
	_, _, err = src.Next(context.Background(), engine.Limits{})
	if !errors.Is(err, kafka.ErrDataLoss) || !strings.Contains(err.Error(), "10..59") {
		t.Fatalf("on-data-loss fail: %v", err)
	}
	m := kafka.NewMetrics(nil)
	skip, _ := kafka.NewDirect(kafka.DirectConfig{Conn: kafka.Connection{Brokers: brokers}, Topics: []string{"events"},
		SkipLoss: true, Pipeline: "p", Logger: quiet, Metrics: m})
	skip.Open(context.Background(), at10)
	recs, _, err := skip.Next(context.Background(), engine.Limits{})
	if err != nil || len(recs) != 40 || recs[0].Offset != 60 {
		t.Fatalf("on-data-loss skip: %d records, err %v", len(recs), err)
	}
}

func TestDirectEchoesPositionsToTheGroup(t *testing.T) {
	brokers := fakeCluster(t, 2)
	produce(t, brokers, "events", 0, 200)
	runPipeline(t, directSource(t, brokers, "lag-group"), t.TempDir(), 1000, 0)
	adm, _ := kgo.NewClient(kgo.SeedBrokers(brokers...))
	defer adm.Close()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = "lag-group"
	resp, err := req.RequestWith(context.Background(), adm)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int32]int64{}
	for _, tp := range resp.Topics {
		for _, p := range tp.Partitions {
			got[p.Partition] = p.Offset
		}
	}
	if got[0] != 100 || got[1] != 100 {
		t.Fatalf("group offsets %v, want 100 per partition", got)
	}
}

func TestDirectPatternPicksUpNewTopics(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "clicks-a"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	produce(t, brokers, "clicks-a", 0, 10)
	src, _ := kafka.NewDirect(kafka.DirectConfig{Conn: kafka.Connection{Brokers: brokers},
		Pattern: "clicks-.*", Start: "earliest", Pipeline: "p", Logger: quiet})
	kafka.SetMetadataRefresh(src, 0)
	ctx := context.Background()
	if err := src.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	recs, _, _ := src.Next(ctx, engine.Limits{})
	if len(recs) != 10 {
		t.Fatalf("first batch %d records", len(recs))
	}
	if err := c.CreateTopic("clicks-b", 2, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateTopic("other", 1, nil); err != nil {
		t.Fatal(err)
	}
	produce(t, brokers, "clicks-b", 10, 20)
	produce(t, brokers, "other", 20, 30)
	// kafka-go answers metadata from a cache refreshed every metadataTTL.
	recs, until, _ := src.Next(ctx, engine.Limits{Wait: 15 * time.Second})
	if len(recs) != 10 || recs[0].Topic != "clicks-b" {
		t.Fatalf("new topic: %d records (%v)", len(recs), until)
	}
	if _, ok := until[engine.TopicPartition{Topic: "other", Partition: 0}]; ok {
		t.Fatalf("a topic not matching the pattern was read: %v", until)
	}
}

// produceTransactions writes v0..v14 to partition 0 of "events" in three
// transactions of five records, each ended by a marker; the middle one
// (v5..v9) aborts.
func produceTransactions(t *testing.T, brokers []string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("events"),
		kgo.TransactionalID("tx-producer"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for txn := range 3 {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			cl.Produce(ctx, &kgo.Record{Value: []byte("v" + strconv.Itoa(txn*5+i))}, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		commit := kgo.TryCommit
		if txn == 1 {
			commit = kgo.TryAbort
		}
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
}

// committedValues are the records of produceTransactions a read_committed
// reader sees, in offset order.
var committedValues = []string{"v0", "v1", "v2", "v3", "v4", "v10", "v11", "v12", "v13", "v14"}

// Transaction markers take offsets but are not records: a range that ends
// in one must finish, no marker may come out as a record, and records of an
// aborted transaction are not read (read_committed).
func TestDirectReadsOnlyCommittedTransactions(t *testing.T) {
	brokers := fakeCluster(t, 1)
	produceTransactions(t, brokers)
	ctx := context.Background()
	src := directSource(t, brokers, "")
	if err := src.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var got []engine.Record
	var until engine.Positions
	deadline := time.Now().Add(10 * time.Second)
	for until[engine.TopicPartition{Topic: "events", Partition: 0}] < 18 && time.Now().Before(deadline) {
		recs, u, err := src.Next(ctx, engine.Limits{MaxRecordsPerPartition: 6, Wait: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		got, until = append(got, recs...), u
	}
	want := committedValues
	if len(got) != len(want) {
		t.Fatalf("read %d records, want the %d committed ones", len(got), len(want))
	}
	for i, r := range got {
		if string(r.Value) != want[i] {
			t.Fatalf("record %d is %q, want %q (a marker or an aborted record leaked, or order broke)", i, r.Value, want[i])
		}
	}
	// 15 records and 3 markers: the position is past all of them.
	if p := until[engine.TopicPartition{Topic: "events", Partition: 0}]; p != 18 {
		t.Fatalf("position %d, want 18 (past the last marker)", p)
	}
}

// A sink holding positions of a topic the pipeline no longer subscribes to
// (its topics list changed) must not make the source read that topic; the
// positions are carried along unchanged.
func TestDirectDoesNotReadUnsubscribedTopics(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "old", "new"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	produce(t, brokers, "old", 0, 10)
	produce(t, brokers, "new", 10, 15)
	src, _ := kafka.NewDirect(kafka.DirectConfig{Conn: kafka.Connection{Brokers: brokers},
		Topics: []string{"new"}, Start: "earliest", Pipeline: "p", Logger: quiet})
	ctx := context.Background()
	old := engine.TopicPartition{Topic: "old", Partition: 0}
	if err := src.Open(ctx, engine.Positions{old: 3}); err != nil {
		t.Fatal(err)
	}
	recs, until, err := src.Next(ctx, engine.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Topic != "new" {
			t.Fatalf("read %s, which is not subscribed", r.Topic)
		}
	}
	if len(recs) != 5 || until[old] != 3 {
		t.Fatalf("%d records, old topic's position %d (want 5 and 3, carried unchanged)", len(recs), until[old])
	}
}

// An aborted transaction longer than a batch: the client drops its records,
// so the first record that arrives (the abort marker) lies past the batch's
// target. The batch must end there, not wait for records that will never
// come (a repartition topic holds such a transaction after its writer was
// killed mid-transaction).
func TestDirectPassesAbortedTransactionLongerThanABatch(t *testing.T) {
	brokers := fakeCluster(t, 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("events"),
		kgo.TransactionalID("tx-long"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	// committed: a0 a1; aborted: 20 records; committed: c0 c1.
	for _, txn := range []struct {
		prefix string
		n      int
		end    kgo.TransactionEndTry
	}{{"a", 2, kgo.TryCommit}, {"x", 20, kgo.TryAbort}, {"c", 2, kgo.TryCommit}} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range txn.n {
			cl.Produce(ctx, &kgo.Record{Value: []byte(txn.prefix + strconv.Itoa(i))}, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, txn.end); err != nil {
			t.Fatal(err)
		}
	}
	src := directSource(t, brokers, "")
	if err := src.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	tp := engine.TopicPartition{Topic: "events", Partition: 0}
	var got []string
	var until engine.Positions
	// 2+1 + 20+1 + 2+1 offsets; bounded in batches, not in time.
	for i := 0; i < 20 && until[tp] < 27; i++ {
		recs, u, err := src.Next(ctx, engine.Limits{MaxRecordsPerPartition: 6, Wait: time.Second})
		if err != nil {
			t.Fatalf("batch %d from %d: %v", i, until[tp], err)
		}
		for _, r := range recs {
			got = append(got, string(r.Value))
		}
		until = u
	}
	if strings.Join(got, " ") != "a0 a1 c0 c1" || until[tp] != 27 {
		t.Fatalf("read %q up to %d, want a0 a1 c0 c1 up to 27", got, until[tp])
	}
}
