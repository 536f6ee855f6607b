package kafka_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sources/kafka"
)

// produceWith writes values from..to-1 as "v<i>" round robin with the
// given producer options (compression, batch size).
func produceWith(t *testing.T, brokers []string, topic string, from, to int, opts ...kgo.Opt) {
	t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(time.Millisecond)}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := from; i < to; i++ {
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Value: []byte("v" + strconv.Itoa(i))}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
}

// readAll reads with src until every partition's position is past n
// records in all, checking that each batch keeps to the per-partition
// limit and that records come in offset order per partition.
func readAll(t *testing.T, src *kafka.Direct, n, perPartition int) []string {
	t.Helper()
	ctx := context.Background()
	var got []string
	last := map[engine.TopicPartition]int64{}
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d records in 30s", len(got), n)
		}
		recs, until, err := src.Next(ctx, engine.Limits{MaxRecordsPerPartition: perPartition, Wait: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		count := map[engine.TopicPartition]int{}
		for _, r := range recs {
			tp := engine.TopicPartition{Topic: r.Topic, Partition: r.Partition}
			count[tp]++
			if prev, ok := last[tp]; ok && r.Offset <= prev {
				t.Fatalf("%s: offset %d after %d", tp, r.Offset, prev)
			}
			last[tp] = r.Offset
			if until[tp] <= r.Offset {
				t.Fatalf("%s: position %d does not pass record %d", tp, until[tp], r.Offset)
			}
			got = append(got, string(r.Value))
		}
		for tp, c := range count {
			if c > perPartition {
				t.Fatalf("%s gave %d records to a batch, limit %d", tp, c, perPartition)
			}
		}
	}
	return got
}

// Compressed batches are decoded once, cut across batches (a compressed
// batch of many records straddles the per-partition limit) and nothing is
// lost or repeated at the cuts.
func TestDirectReadsCompressedBatches(t *testing.T) {
	for _, codec := range []struct {
		name string
		c    kgo.CompressionCodec
	}{{"snappy", kgo.SnappyCompression()}, {"lz4", kgo.Lz4Compression()}, {"zstd", kgo.ZstdCompression()}, {"gzip", kgo.GzipCompression()}} {
		t.Run(codec.name, func(t *testing.T) {
			brokers := fakeCluster(t, 2)
			produceWith(t, brokers, "events", 0, 3000, kgo.ProducerBatchCompression(codec.c))
			src := directSource(t, brokers, "")
			if err := src.Open(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			exactlyOnce(t, readAll(t, src, 3000, 97), 3000)
		})
	}
}

// Backlog says how much waits past the positions the last Next returned.
func TestDirectBacklog(t *testing.T) {
	brokers := fakeCluster(t, 2)
	src := directSource(t, brokers, "")
	if _, known := src.Backlog(); known {
		t.Fatal("backlog known before Open")
	}
	produce(t, brokers, "events", 0, 100)
	ctx := context.Background()
	if err := src.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if n, known := src.Backlog(); !known || n != 100 {
		t.Fatalf("after Open: backlog %d (known %v), want 100", n, known)
	}
	recs, _, err := src.Next(ctx, engine.Limits{MaxRecordsPerPartition: 30})
	if err != nil || len(recs) != 60 {
		t.Fatalf("first batch: %d records, err %v", len(recs), err)
	}
	if n, _ := src.Backlog(); n != 40 {
		t.Fatalf("after 60 of 100: backlog %d, want 40", n)
	}
	exactlyOnce(t, append(recordValues(recs), readAll(t, src, 40, 30)...), 100)
	if n, known := src.Backlog(); !known || n != 0 {
		t.Fatalf("caught up: backlog %d (known %v), want 0", n, known)
	}
}

func recordValues(recs []engine.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Value)
	}
	return out
}

// The direct source's memory is bounded by the batch settings, not by the
// volume read: ten times a batch's volume flows through while the live
// heap is sampled. The records are in kfake's memory before the run
// starts, so the baseline includes them.
func TestDirectHeapBoundedByBatchSettings(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 400,000 records")
	}
	const (
		partitions   = 4
		perPartition = 10_000
		batches      = 10
		total        = partitions * perPartition * batches
		valueBytes   = 100
	)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	fillValues(t, brokers, total, valueBytes)

	baseline := liveHeap()
	src := directSource(t, brokers, "")
	ctx := context.Background()
	if err := src.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var peak uint64
	var read int
	for read < total {
		recs, _, err := src.Next(ctx, engine.Limits{MaxRecordsPerPartition: perPartition, Wait: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		read += len(recs)
		peak = max(peak, liveHeap()) // the batch is still referenced here
		runtime.KeepAlive(recs)
	}
	// The batch held (~128 B a record plus the fetched bytes it points
	// into), as much fetched ahead, what the client buffers
	// (fetchMaxBytes) and slack for the runtime (more under -race);
	// reading all 400,000 records at once takes ≈ 120 MiB.
	batchBytes := uint64(partitions * perPartition * (128 + valueBytes + 70))
	bound := 2*batchBytes + 16<<20 + 16<<20
	if grew := peak - min(peak, baseline); grew > bound {
		t.Fatalf("live heap grew by %d MiB reading %d records (batch ≈ %d MiB), bound %d MiB",
			grew>>20, total, batchBytes>>20, bound>>20)
	}
	if peak < baseline+batchBytes/2 {
		t.Fatalf("live heap %d MiB while holding a batch of ≈ %d MiB, baseline %d MiB: the measurement is broken",
			peak>>20, batchBytes>>20, baseline>>20)
	}
	t.Logf("live heap grew at most %d MiB (batch ≈ %d MiB)", (peak-baseline)>>20, batchBytes>>20)
}

// fillValues produces n values of size bytes round robin, in big batches.
// The values are random, so they compress as little as real data does:
// what one fetch decompresses to is bounded by the fetch size times the
// compression ratio, and zero padding would make that ratio absurd.
func fillValues(t *testing.T, brokers []string, n, size int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("events"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerBatchMaxBytes(1<<20),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for i := range n {
		v := make([]byte, size)
		rand.Read(v)
		copy(v, fmt.Sprintf("v%d,", i))
		cl.Produce(ctx, &kgo.Record{Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
