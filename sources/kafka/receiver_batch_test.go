package kafka_test

import (
	"context"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sources/kafka"
)

// recvAwait is how long a test waits for the receiver to have logged what
// was produced: a group join and a few fetches against kfake.
const recvAwait = 20 * time.Second

func recvNext(t *testing.T, src *kafka.Receiver, limits engine.Limits) ([]engine.Record, engine.Positions) {
	t.Helper()
	recs, until, err := src.Next(context.Background(), limits)
	if err != nil {
		t.Fatal(err)
	}
	return recs, until
}

// A batch takes max-records-per-partition for each assigned partition, not
// for the whole receiver (which has one position, its log sequence), and
// never more than the rate controller's max-records.
func TestReceiverBatchCapPerPartition(t *testing.T) {
	brokers := fakeCluster(t, 4)
	produce(t, brokers, "events", 0, 4000)
	src := receiverSource(t, brokers, filepath.Join(t.TempDir(), "wal"))
	if err := src.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if !kafka.AwaitReceiverStored(src, 4000, recvAwait) {
		t.Fatal("the receiver did not log the 4000 records")
	}
	var got []string
	for _, tc := range []struct {
		limits engine.Limits
		want   int
	}{
		{engine.Limits{MaxRecordsPerPartition: 100}, 400},                  // 100 × 4 partitions
		{engine.Limits{MaxRecordsPerPartition: 100, MaxRecords: 150}, 150}, // the rate controller's cap
		{engine.Limits{MaxRecords: 250}, 250},
		{engine.Limits{MaxRecordsPerPartition: 1000}, 3200}, // what is left
	} {
		recs, _ := recvNext(t, src, tc.limits)
		if len(recs) != tc.want {
			t.Fatalf("limits %+v: a batch of %d records, want %d", tc.limits, len(recs), tc.want)
		}
		got = append(got, recordValues(recs)...)
	}
	exactlyOnce(t, got, 4000)
}

// Backlog is unknown while the group join is in progress, however long
// it takes and although records wait in the topic: an --idle-exit
// pipeline must not take the receiver for caught up before the group
// delivered anything. Once the partitions are assigned and read, it counts
// what is stored and what waits in Kafka.
func TestReceiverBacklogUnknownUntilAssigned(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	produce(t, brokers, "events", 0, 100)
	// The join is held until release: a slow group coordinator.
	joining, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	c.ControlKey(int16(kmsg.JoinGroup), func(kmsg.Request) (kmsg.Response, error, bool) {
		once.Do(func() { close(joining) })
		c.SleepControl(func() { <-release })
		return nil, nil, false // then handled as usual
	})
	src := receiverSource(t, brokers, filepath.Join(t.TempDir(), "wal"))
	if err := src.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	select {
	case <-joining:
	case <-time.After(recvAwait):
		t.Fatal("the receiver never asked to join the group")
	}
	if n, known := src.Backlog(); known {
		t.Fatalf("Backlog %d known while the group join is in progress", n)
	}
	// A read while joining returns nothing, and still nothing is known.
	if recs, _ := recvNext(t, src, engine.Limits{MaxRecordsPerPartition: 100, Wait: 200 * time.Millisecond}); len(recs) != 0 {
		t.Fatalf("%d records before the group assigned any partition", len(recs))
	}
	if n, known := src.Backlog(); known {
		t.Fatalf("Backlog %d known while the group join is in progress", n)
	}
	close(release)
	if !kafka.AwaitReceiverStored(src, 100, recvAwait) || !kafka.AwaitReceiverBacklogKnown(src, recvAwait) {
		t.Fatal("the receiver did not log the 100 records after the join, or its backlog stayed unknown")
	}
	if n, known := src.Backlog(); !known || n != 100 {
		t.Fatalf("Backlog %d (known %v) with 100 records logged and none handed out, want 100", n, known)
	}
	recs, _ := recvNext(t, src, engine.Limits{MaxRecordsPerPartition: 10})
	if n, known := src.Backlog(); !known || n != int64(100-len(recs)) {
		t.Fatalf("Backlog %d (known %v) after a batch of %d of 100", n, known, len(recs))
	}
	produce(t, brokers, "events", 100, 120)
	got := recordValues(recs)
	for len(got) < 120 {
		recs, _ := recvNext(t, src, engine.Limits{MaxRecordsPerPartition: 10, Wait: recvAwait})
		if len(recs) == 0 {
			t.Fatalf("nothing more after %d of 120 records", len(got))
		}
		got = append(got, recordValues(recs)...)
	}
	exactlyOnce(t, got, 120)
	if n, known := src.Backlog(); !known || n != 0 {
		t.Fatalf("Backlog %d (known %v) with everything handed out, want 0", n, known)
	}
}

// Backlog counts the subscribed partitions another member holds: a
// member of a killed instance keeps its partitions until its session
// expires, and a pipeline that counted only its own would be taken for
// caught up (--idle-exit) while theirs wait. Here a member that joined and
// stalled (it never commits) holds some of the partitions.
func TestReceiverBacklogCountsPartitionsOfOtherMembers(t *testing.T) {
	brokers := fakeCluster(t, 4)
	produce(t, brokers, "events", 0, 400)
	stalled, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup("recv"),
		kgo.ConsumeTopics("events"), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	// It joins, is given every partition, and polls no more.
	ctx, cancel := context.WithTimeout(context.Background(), recvAwait)
	if fs := stalled.PollFetches(ctx); fs.NumRecords() == 0 {
		t.Fatalf("the stalled member read nothing: %v", fs.Errors())
	}
	cancel()

	src := receiverSource(t, brokers, filepath.Join(t.TempDir(), "wal"))
	if err := src.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// The receiver reads what the rebalance gives it, to the end.
	var got []string
	for {
		recs, _ := recvNext(t, src, engine.Limits{MaxRecordsPerPartition: 1000, Wait: time.Second})
		got = append(got, recordValues(recs)...)
		if !kafka.AwaitReceiverBacklogKnown(src, recvAwait) {
			t.Fatal("Backlog stayed unknown")
		}
		n, _ := src.Backlog()
		if n+int64(len(got)) != 400 {
			t.Fatalf("Backlog %d with %d of 400 records handed out: it must count every record not handed out", n, len(got))
		}
		if len(recs) == 0 && len(got) > 0 {
			break // read what it holds
		}
	}
	if len(got) == 0 || len(got) == 400 {
		t.Fatalf("the receiver read %d records: the partitions were not shared", len(got))
	}
	if n, _ := src.Backlog(); n == 0 {
		t.Fatal("Backlog 0 while the stalled member's partitions wait")
	}
}

// A batch handed out from the blocks in memory is exactly what the
// write-ahead log replays for the same positions after the receiver is
// reopened there: keys, values, headers, timestamps, offsets.
func TestReceiverBatchFromMemoryEqualsReplayFromLog(t *testing.T) {
	brokers := fakeCluster(t, 3)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("events"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 3000 {
		r := &kgo.Record{Value: []byte("v" + strconv.Itoa(i)), Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i))}
		if i%2 == 0 {
			r.Key = []byte("k" + strconv.Itoa(i%7))
		}
		if i%3 == 0 {
			r.Headers = []kgo.RecordHeader{{Key: "h", Value: []byte("x")}, {Key: "empty"}}
		}
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()

	walDir := filepath.Join(t.TempDir(), "wal")
	src := receiverSource(t, brokers, walDir)
	ctx := context.Background()
	if err := src.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if !kafka.AwaitReceiverStored(src, 3000, recvAwait) {
		t.Fatal("the receiver did not log the 3000 records")
	}
	if stored, inMemory := kafka.ReceiverStored(src); inMemory != stored {
		t.Fatalf("%d of %d stored records in memory while reading", inMemory, stored)
	}
	limits := engine.Limits{MaxRecordsPerPartition: 700}
	skip, from := recvNext(t, src, engine.Limits{MaxRecords: 123}) // a batch boundary inside a block
	fromMemory, until := recvNext(t, src, limits)
	if len(fromMemory) != 2100 {
		t.Fatalf("a batch of %d records, want 2100", len(fromMemory))
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened where the second batch began: nothing of it is in memory.
	src = receiverSource(t, brokers, walDir)
	if err := src.Open(ctx, from); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if stored, inMemory := kafka.ReceiverStored(src); stored != 3000-123 || inMemory != 0 {
		t.Fatalf("after reopening: %d records stored, %d of them in memory; want %d, none", stored, inMemory, 3000-123)
	}
	fromLog, untilLog := recvNext(t, src, limits)
	if !until.Equal(untilLog) {
		t.Fatalf("positions after the batch: %v from memory, %v replayed", until, untilLog)
	}
	if !reflect.DeepEqual(fromMemory, fromLog) {
		for i := range min(len(fromMemory), len(fromLog)) {
			if !reflect.DeepEqual(fromMemory[i], fromLog[i]) {
				t.Fatalf("record %d: %+v from memory, %+v replayed", i, fromMemory[i], fromLog[i])
			}
		}
		t.Fatalf("%d records from memory, %d replayed", len(fromMemory), len(fromLog))
	}
	// And they are what was produced.
	byValue := map[string]*kgo.Record{}
	for _, r := range recs {
		byValue[string(r.Value)] = r
	}
	for _, r := range append(skip, fromMemory...) {
		p := byValue[string(r.Value)]
		if p == nil || string(r.Key) != string(p.Key) || (r.Key == nil) != (p.Key == nil) || !r.Time.Equal(p.Timestamp) ||
			len(r.Headers) != len(p.Headers) || r.Partition != p.Partition || r.Offset != p.Offset {
			t.Fatalf("record %s: %+v, produced %+v", r.Value, r, p)
		}
		for i, h := range r.Headers {
			if h.Key != p.Headers[i].Key || string(h.Value) != string(p.Headers[i].Value) {
				t.Fatalf("record %s header %d: %+v, produced %+v", r.Value, i, h, p.Headers[i])
			}
		}
	}
}

// The receiver's memory is bounded by the batch settings, not by the
// volume read: ten batches' volume flows through a slow reader, which
// takes one batch at a time and lets the receiver log ahead as far as it
// will before the next, while the heap in use is sampled. The receiver
// logs ahead of the batches by at most one batch, whatever waits in Kafka.
func TestReceiverHeapBoundedByBatchSettings(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 400,000 records")
	}
	const (
		partitions   = 4
		perPartition = 10_000
		batches      = 10
		total        = partitions * perPartition * batches
		valueBytes   = 100
		// What a record costs: an engine.Record (≈128 B) once handed
		// out, and its log entry (the value plus ≈40 B) while stored or
		// handed out.
		recordBytes = 128 + valueBytes + 40
		// franz-go's fetches, made small so that the receiver's own
		// memory dominates: a fetch response and its decoded records
		// (≈160 B each, a record taking ≈130 B of the response), one being
		// polled and one buffered.
		fetchBytes  = 1 << 20
		clientBytes = 2 * (fetchBytes + fetchBytes/130*160)
	)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	fillValues(t, brokers, total, valueBytes)

	baseline := recvHeapInUse()
	src := receiverSource(t, brokers, filepath.Join(t.TempDir(), "wal"))
	kafka.SetReceiverFetchBytes(src, fetchBytes/partitions, fetchBytes)
	ctx := context.Background()
	if err := src.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var peak uint64
	var read, fullAhead int
	limits := engine.Limits{MaxRecordsPerPartition: perPartition, Wait: time.Second}
	for read < total {
		recs, until, err := src.Next(ctx, limits)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			t.Fatalf("no records after %d of %d", read, total)
		}
		read += len(recs)
		// A slow reader: the receiver logs ahead as far as it will before
		// the next batch, while this one is still referenced.
		if !kafka.AwaitReceiverAhead(src, int64(total-read), recvAwait) {
			t.Fatalf("the receiver neither logged the remaining %d records nor filled its read-ahead", total-read)
		}
		stored, inMemory := kafka.ReceiverStored(src)
		if stored > partitions*perPartition {
			t.Fatalf("%d records logged ahead of the batches, more than a batch (%d)", stored, partitions*perPartition)
		}
		if stored == partitions*perPartition && inMemory == stored {
			fullAhead++
		}
		peak = max(peak, recvHeapInUse())
		runtime.KeepAlive(recs)
		if err := src.Committed(ctx, until); err != nil {
			t.Fatal(err)
		}
	}
	// A batch held, one logged ahead, the client's buffers, and slack for
	// the runtime (more under -race).
	batchBytes := uint64(partitions * perPartition * recordBytes)
	bound := 2*batchBytes + clientBytes + 16<<20
	grew := peak - min(peak, baseline)
	if grew > bound {
		t.Fatalf("heap in use grew by %d MiB reading %d records (batch ≈ %d MiB), bound %d MiB",
			grew>>20, total, batchBytes>>20, bound>>20)
	}
	if fullAhead == 0 {
		t.Fatal("no sample held a whole batch logged ahead in memory: the test did not measure what it says")
	}
	t.Logf("heap in use grew at most %d MiB (batch ≈ %d MiB, bound %d MiB)", grew>>20, batchBytes>>20, bound>>20)
}

func recvHeapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
