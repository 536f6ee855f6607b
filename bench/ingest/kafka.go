package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// benchTopic is the topic every throughput row reads.
const benchTopic = "bench"

var codecs = map[string]kgo.CompressionCodec{
	"none":   kgo.NoCompression(),
	"lz4":    kgo.Lz4Compression(),
	"snappy": kgo.SnappyCompression(),
	"zstd":   kgo.ZstdCompression(),
	"gzip":   kgo.GzipCompression(),
}

// startBroker runs `sluice broker` on a free port and waits until it
// answers Kafka requests.
func (b *bench) startBroker() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	b.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	b.broker, err = startChild("sluice broker", filepath.Join(b.dir, "broker.log"), nil, b.sluice,
		"broker", "--data", filepath.Join(b.dir, "broker"), "--listen", b.addr, "--log-level", "warn")
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := cl.Ping(ctx)
		cancel()
		switch {
		case err == nil:
			log.Printf("broker listening on %s", b.addr)
			return nil
		case b.broker.hasExited():
			return b.broker.failed(fmt.Errorf("sluice broker exited at start: %v", b.broker.err))
		case time.Now().After(deadline):
			return b.broker.failed(fmt.Errorf("sluice broker does not answer on %s after 30s: %w", b.addr, err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopBroker ends the broker with SIGTERM, as an operator would.
func (b *bench) stopBroker() {
	if err := b.broker.stop(30 * time.Second); err != nil {
		// The figures are taken already: worth a log line, not a failure.
		log.Print(b.broker.failed(err))
	}
}

// freePort asks the kernel for a port nobody listens on. Another process
// could take it before the broker does; then the broker fails to start and
// says so.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// createTopic creates topic with partitions on the broker at addr.
func createTopic(addr, topic string, partitions int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = kadm.NewClient(cl).CreateTopic(ctx, int32(partitions), 1, nil, topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

// fill writes cfg.records values of recordBytes constant bytes, no key,
// into topic bench, as fast as a tuned producer can: acks=1, no
// idempotence, long linger and a large buffer.
func (b *bench) fill() error {
	if err := createTopic(b.addr, benchTopic, b.cfg.partitions); err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.DefaultProduceTopic(benchTopic),
		kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(),
		kgo.ProducerBatchCompression(codecs[b.cfg.compression]),
		// Round robin puts exactly records/partitions in each partition.
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.ProducerLinger(50*time.Millisecond),
		kgo.MaxBufferedRecords(200_000))
	if err != nil {
		return err
	}
	defer cl.Close()
	// Letters and no '\n': the raw file sink writes each value as exactly
	// one line, so counting lines counts records.
	value := make([]byte, recordBytes)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	log.Printf("writing %d records of %d bytes into %d partitions (compression %s)",
		b.cfg.records, recordBytes, b.cfg.partitions, b.cfg.compression)
	start := time.Now()
	ctx := context.Background()
	var (
		mu         sync.Mutex // callbacks of different partitions run concurrently
		produceErr error
	)
	for range b.cfg.records {
		cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				produceErr = cmp.Or(produceErr, err)
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if produceErr != nil {
		return fmt.Errorf("fill topic %s: %w", benchTopic, produceErr)
	}
	took := time.Since(start)
	log.Printf("filled in %.1fs (%.0f records/s)", took.Seconds(), float64(b.cfg.records)/took.Seconds())
	return nil
}

// rawConsume is the baseline, run in a child process (-raw-consumer) so
// its memory and CPU are accounted exactly as sluice's are: a plain
// read_committed franz-go consumer, reading every partition of topic bench
// from offset 0 until it has seen n records.
func rawConsume(addr string, n, partitions int, timeout time.Duration) error {
	offsets := make(map[int32]kgo.Offset, partitions)
	for p := range partitions {
		offsets[int32(p)] = kgo.NewOffset().At(0)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{benchTopic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	seen := 0
	for seen < n {
		fs := cl.PollFetches(ctx)
		if errs := fs.Errors(); len(errs) > 0 {
			return fmt.Errorf("after %d of %d records: %w", seen, n, errs[0].Err)
		}
		seen += fs.NumRecords()
	}
	return nil
}

// countTopic counts the records a read_committed consumer sees in topic,
// reading until nothing new arrived for idle. Called once the writer has
// exited, so every transaction is settled.
func countTopic(addr, topic string, idle time.Duration) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var n int64
	for {
		ctx, cancel := context.WithTimeout(context.Background(), idle)
		fs := cl.PollFetches(ctx)
		cancel()
		for _, e := range fs.Errors() {
			if errors.Is(e.Err, context.DeadlineExceeded) {
				return n, nil
			}
			return n, fmt.Errorf("count topic %s: %w", topic, e.Err)
		}
		n += int64(fs.NumRecords())
	}
}
