package broker

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Benchmarks drive the broker with franz-go over loopback, 100-byte
// records; `go run ./bench/broker` prints the full table with kafka-go and
// the disk's own rate.

func benchProduce(b *testing.B, acks kgo.Acks, codec ...kgo.CompressionCodec) {
	_, addr := testBroker(b, Options{})
	benchProduceTo(b, addr, acks, codec...)
}

func benchProduceTo(b *testing.B, addr string, acks kgo.Acks, codec ...kgo.CompressionCodec) {
	createTopic(b, newKgo(b, addr), "bench", 4)
	cl := newKgo(b, addr, kgo.DefaultProduceTopic("bench"), kgo.RequiredAcks(acks), kgo.DisableIdempotentWrite(),
		kgo.ProducerLinger(0), kgo.MaxBufferedRecords(1<<20), kgo.ProducerBatchMaxBytes(1<<20),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.MaxProduceRequestsInflightPerBroker(8),
		kgo.ProducerBatchCompression(append(codec, kgo.NoCompression())...))
	value := make([]byte, 100)
	rand.Read(value[:50]) // half random, half zeros: compressible as real values are
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	ctx := context.Background()
	b.SetBytes(int64(len(value)))
	b.ResetTimer()
	wg.Add(b.N)
	for range b.N {
		cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				once.Do(func() { firstErr = err })
			}
			wg.Done()
		})
	}
	wg.Wait()
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkProduceAcks1(b *testing.B)   { benchProduce(b, kgo.LeaderAck()) }
func BenchmarkProduceAcksAll(b *testing.B) { benchProduce(b, kgo.AllISRAcks()) }

// Compressed batches are decompressed on append to be validated.
func BenchmarkProduceAcks1Gzip(b *testing.B) { benchProduce(b, kgo.LeaderAck(), kgo.GzipCompression()) }
func BenchmarkProduceAcks1Lz4(b *testing.B)  { benchProduce(b, kgo.LeaderAck(), kgo.Lz4Compression()) }
func BenchmarkProduceAcks1Zstd(b *testing.B) { benchProduce(b, kgo.LeaderAck(), kgo.ZstdCompression()) }

func BenchmarkConsume(b *testing.B) {
	_, addr := testBroker(b, Options{})
	createTopic(b, newKgo(b, addr), "bench", 4)
	prod := newKgo(b, addr, kgo.DefaultProduceTopic("bench"), kgo.DisableIdempotentWrite(), kgo.RequiredAcks(kgo.LeaderAck()),
		kgo.MaxBufferedRecords(1<<20), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	value := make([]byte, 100)
	rand.Read(value)
	for range b.N {
		prod.Produce(context.Background(), &kgo.Record{Value: value}, nil)
	}
	if err := prod.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	offsets := map[int32]kgo.Offset{}
	for p := range int32(4) {
		offsets[p] = kgo.NewOffset().At(0)
	}
	cl := newKgo(b, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"bench": offsets}),
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(16<<20), kgo.FetchMaxWait(100*time.Millisecond))
	ctx := ctxT(b)
	b.SetBytes(int64(len(value)))
	b.ResetTimer()
	for got := 0; got < b.N; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			b.Fatal(err)
		}
		got += fs.NumRecords()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkProduceIdempotent is franz-go's default producer (idempotent,
// acks=all), the baseline of the transactional ones.
func BenchmarkProduceIdempotent(b *testing.B) { benchProduceTxn(b, 0) }

// BenchmarkProduceTxn* commit a transaction every N records (acks=all):
// the records/s of an exactly-once writer and the cost of a commit
// (AddPartitionsToTxn, EndTxn: two fsyncs of the transaction log, a marker
// on each of the 4 partitions, fsynced).
func BenchmarkProduceTxn100(b *testing.B)   { benchProduceTxn(b, 100) }
func BenchmarkProduceTxn10000(b *testing.B) { benchProduceTxn(b, 10000) }

func benchProduceTxn(b *testing.B, perTxn int) {
	_, addr := testBroker(b, Options{})
	createTopic(b, newKgo(b, addr), "bench", 4)
	opts := []kgo.Opt{kgo.DefaultProduceTopic("bench"), kgo.ProducerLinger(0), kgo.MaxBufferedRecords(1 << 20),
		kgo.ProducerBatchMaxBytes(1 << 20), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression())}
	if perTxn > 0 {
		opts = append(opts, kgo.TransactionalID("bench"))
	}
	cl := newKgo(b, addr, opts...)
	value := make([]byte, 100)
	rand.Read(value)
	ctx := context.Background()
	var firstErr error
	var mu sync.Mutex
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			firstErr = cmp.Or(firstErr, err)
			mu.Unlock()
		}
	}
	b.SetBytes(int64(len(value)))
	b.ResetTimer()
	txns := 0
	for done := 0; done < b.N; {
		n := b.N - done
		if perTxn > 0 {
			n = min(n, perTxn)
			if err := cl.BeginTransaction(); err != nil {
				b.Fatal(err)
			}
		}
		for range n {
			cl.Produce(ctx, &kgo.Record{Value: value}, promise)
		}
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		if perTxn > 0 {
			if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
				b.Fatal(err)
			}
			txns++
		}
		done += n
	}
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if txns > 0 {
		b.ReportMetric(float64(txns)/b.Elapsed().Seconds(), "txns/s")
	}
}

// BenchmarkTxnConcurrent runs 1, 4 and 16 transactional producers side by
// side, 10 records a transaction: the coordinator's log and the partition
// logs share fsyncs between them, so transactions/s grow with producers.
func BenchmarkTxnConcurrent(b *testing.B) {
	for _, n := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("producers=%d", n), func(b *testing.B) {
			_, addr := testBroker(b, Options{})
			createTopic(b, newKgo(b, addr), "bench", 4)
			cls := make([]*kgo.Client, n)
			for i := range cls {
				cls[i] = newKgo(b, addr, kgo.DefaultProduceTopic("bench"), kgo.TransactionalID(fmt.Sprint("p", i)),
					kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
			}
			ctx := context.Background()
			per := max(b.N/n, 1)
			b.ResetTimer()
			var wg sync.WaitGroup
			for _, cl := range cls {
				wg.Go(func() {
					for range per {
						if err := cl.BeginTransaction(); err != nil {
							b.Error(err)
							return
						}
						for range 10 {
							cl.Produce(ctx, &kgo.Record{Value: []byte("0123456789")}, nil)
						}
						if err := cl.Flush(ctx); err != nil {
							b.Error(err)
							return
						}
						if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(per*n)/b.Elapsed().Seconds(), "txns/s")
		})
	}
}
