// Command broker measures the built-in broker: produce (acks=1 and
// acks=all) and consume throughput with 100-byte records through franz-go
// and kafka-go, beside the disk's own fsync'd sequential write rate measured
// in the same run, and prints one table. A last row measures the acks=all
// path of the partition log alone (append + group-commit fsync, no network
// or client), which shows how much of the end-to-end rate the clients take.
//
//	go run ./bench/broker [-records N] [-runs R] [-dir DIR]
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/broker/storage"
)

const (
	recordBytes = 100
	partitions  = 4
)

func main() {
	records := flag.Int("records", 2_000_000, "records per franz-go run (kafka-go runs use a quarter)")
	runs := flag.Int("runs", 3, "runs per measurement; the table shows medians")
	dir := flag.String("dir", "", "directory for the broker's data and the disk test (default: a temporary directory)")
	only := flag.String("only", "", "run only measurements whose name contains this")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile")
	flag.Parse()
	if err := run(*records, *runs, *dir, *only, *cpuprofile); err != nil {
		fmt.Fprintln(os.Stderr, "bench/broker:", err)
		os.Exit(1)
	}
}

type result struct {
	name     string
	rate     []float64 // records/s per run
	diskRate float64   // bytes/s on disk per run, for acks=all comparisons
	bytesPer float64   // log bytes per record
}

func run(records, runs int, dir, only, cpuprofile string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "sluice-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	b, err := broker.Open(filepath.Join(dir, "data"), broker.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer b.Close()
	l, err := b.Listen("127.0.0.1:0", nil)
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	// Random bytes: what compression cannot shrink, though both clients
	// are told not to compress anyway.
	value := make([]byte, recordBytes)
	rand.Read(value)

	disk := make([]float64, 0, runs)
	for range runs {
		r, err := diskRate(dir)
		if err != nil {
			return err
		}
		disk = append(disk, r)
	}
	diskMed := median(disk)

	var results []*result
	measure := func(name string, n int, fn func(topic string, n int) (time.Duration, error), isProduce bool) error {
		if only != "" && !strings.Contains(name, only) {
			return nil
		}
		res := &result{name: name}
		for i := range runs {
			topic := fmt.Sprintf("%s-%d", strings.NewReplacer(" ", "-", "=", "", ",", "").Replace(name), i)
			if isProduce {
				if err := createTopic(addr, topic); err != nil {
					return err
				}
			} else {
				topic = fmt.Sprintf("consume-src-%d", i)
			}
			d, err := fn(topic, n)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			res.rate = append(res.rate, float64(n)/d.Seconds())
			if isProduce {
				size := dirSize(filepath.Join(dir, "data", "topics", topic))
				res.bytesPer = float64(size) / float64(n)
				if !strings.HasPrefix(topic, "consume") {
					deleteTopic(addr, topic)
				}
			}
		}
		results = append(results, res)
		fmt.Fprintf(os.Stderr, "%-34s %12.0f records/s (runs: %v)\n", name, median(res.rate), rounded(res.rate))
		return nil
	}

	// Source data for the consume runs, one topic per run so each reads cold
	// offsets from the start.
	for i := range runs {
		topic := fmt.Sprintf("consume-src-%d", i)
		if err := createTopic(addr, topic); err != nil {
			return err
		}
		if _, err := franzProduce(addr, topic, records, value, kgo.LeaderAck()); err != nil {
			return err
		}
	}

	steps := []struct {
		name      string
		n         int
		fn        func(string, int) (time.Duration, error)
		isProduce bool
	}{
		{"produce acks=1 franz-go", records, func(t string, n int) (time.Duration, error) {
			return franzProduce(addr, t, n, value, kgo.LeaderAck())
		}, true},
		{"produce acks=all franz-go", records, func(t string, n int) (time.Duration, error) {
			return franzProduce(addr, t, n, value, kgo.AllISRAcks())
		}, true},
		{"consume franz-go", records, func(t string, n int) (time.Duration, error) {
			return franzConsume(addr, t, n)
		}, false},
		{"produce acks=1 kafka-go", records / 4, func(t string, n int) (time.Duration, error) {
			return kafkaGoProduce(addr, t, n, value, kafka.RequireOne)
		}, true},
		{"produce acks=all kafka-go", records / 4, func(t string, n int) (time.Duration, error) {
			return kafkaGoProduce(addr, t, n, value, kafka.RequireAll)
		}, true},
		{"consume kafka-go Reader", records / 4, func(t string, n int) (time.Duration, error) {
			return kafkaGoConsume(addr, t, n)
		}, false},
		{"consume kafka-go Conn", records / 2, func(t string, n int) (time.Duration, error) {
			return kafkaGoConnConsume(addr, t, n)
		}, false},
	}
	for _, s := range steps {
		if err := measure(s.name, s.n, s.fn, s.isProduce); err != nil {
			return err
		}
	}
	// The acks=all path without network or client: what the log itself
	// does against the disk.
	if only == "" || strings.Contains("log append+fsync", only) {
		res := &result{name: "log append+fsync, 4 writers"}
		for i := range runs {
			rate, bytesPer, err := logAppendSync(filepath.Join(dir, fmt.Sprintf("log-%d", i)), records, value)
			if err != nil {
				return err
			}
			res.rate, res.bytesPer = append(res.rate, rate), bytesPer
		}
		results = append(results, res)
		fmt.Fprintf(os.Stderr, "%-34s %12.0f records/s (runs: %v)\n", res.name, median(res.rate), rounded(res.rate))
	}

	fmt.Printf("Built-in broker, %d-byte records, %d partitions, %d runs (medians), GOMAXPROCS=%d, %s/%s\n",
		recordBytes, partitions, runs, runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH)
	fmt.Printf("disk, fsync'd sequential writes of 1 MiB: %.1f MB/s (runs: %v)\n\n", diskMed/1e6, roundedMB(disk))
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measurement\trecords/s\tMB/s on disk\tvs target\tvs disk fsync'd rate\t")
	for _, r := range results {
		m := median(r.rate)
		onDisk, vsDisk, vsTarget := "", "", ""
		if r.bytesPer > 0 {
			onDisk = fmt.Sprintf("%.1f", m*r.bytesPer/1e6)
			vsDisk = fmt.Sprintf("%.2f", m*r.bytesPer/diskMed)
		}
		switch {
		case strings.HasPrefix(r.name, "produce acks=1"):
			vsTarget = fmt.Sprintf("%.2f × 1M/s", m/1e6)
		case strings.HasPrefix(r.name, "produce acks=all"), strings.HasPrefix(r.name, "log"):
			vsTarget = fmt.Sprintf("%.2f × 50%% disk", m*r.bytesPer/diskMed/0.5)
		case strings.HasPrefix(r.name, "consume"):
			vsTarget = fmt.Sprintf("%.2f × 2M/s", m/2e6)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t\n", r.name, m, onDisk, vsTarget, vsDisk)
	}
	return tw.Flush()
}

// diskRate writes 256 MiB in 1 MiB chunks, fsyncing after each, and returns
// bytes per second: what the disk gives a writer that waits for durability.
func diskRate(dir string) (float64, error) {
	path := filepath.Join(dir, "disk-test")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	defer f.Close()
	// Random, so a disk or host layer that compresses or deduplicates
	// cannot flatter the baseline.
	chunk := make([]byte, 1<<20)
	rand.Read(chunk)
	const total = 256 // MiB: long enough that a burst cache does not set the figure
	start := time.Now()
	for range total {
		if _, err := f.Write(chunk); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
	}
	return float64(total<<20) / time.Since(start).Seconds(), nil
}

func createTopic(addr, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, partitions, 1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		return err
	}
	if c := resp.Topics[0].ErrorCode; c != 0 {
		return fmt.Errorf("create topic %s: error code %d", topic, c)
	}
	return nil
}

func deleteTopic(addr, topic string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return
	}
	defer cl.Close()
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.TopicNames = []string{topic}
	req.RequestWith(context.Background(), cl)
}

func franzProduce(addr, topic string, n int, value []byte, acks kgo.Acks) (time.Duration, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(acks),
		kgo.DisableIdempotentWrite(), kgo.ProducerLinger(0), kgo.MaxBufferedRecords(1<<20),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.MaxProduceRequestsInflightPerBroker(8), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	wg.Add(n)
	start := time.Now()
	for range n {
		cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				once.Do(func() { firstErr = err })
			}
			wg.Done()
		})
	}
	wg.Wait()
	return time.Since(start), firstErr
}

func franzConsume(addr, topic string, n int) (time.Duration, error) {
	offsets := map[int32]kgo.Offset{}
	for p := range int32(partitions) {
		offsets[p] = kgo.NewOffset().At(0)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(16<<20))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return 0, err
		}
		got += fs.NumRecords()
	}
	return time.Since(start), nil
}

func kafkaGoProduce(addr, topic string, n int, value []byte, acks kafka.RequiredAcks) (time.Duration, error) {
	// A Transport per writer: the shared default caches metadata from
	// before this run's topic existed.
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, RequiredAcks: acks, Balancer: &kafka.RoundRobin{}, Transport: &kafka.Transport{},
		BatchSize: 10000, BatchBytes: 1 << 20, BatchTimeout: time.Millisecond}
	defer w.Close()
	const chunk = 10000
	msgs := make([]kafka.Message, chunk)
	for i := range msgs {
		msgs[i] = kafka.Message{Value: value}
	}
	// Several writers in parallel, as an application with many goroutines
	// would; one WriteMessages call waits for its batch.
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := time.Now()
	for w0 := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w0 * chunk; i < n; i += writers * chunk {
				m := min(chunk, n-i)
				if err := w.WriteMessages(context.Background(), msgs[:m]...); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	return d, <-errs
}

func kafkaGoConsume(addr, topic string, n int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, partitions)
	per := make([]int, partitions)
	start := time.Now()
	total := 0
	// Each partition's share of the first n records, read with the Reader.
	for p := range partitions {
		per[p] = n / partitions
		if p < n%partitions {
			per[p]++
		}
		total += per[p]
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: p,
				MinBytes: 1, MaxBytes: 16 << 20, QueueCapacity: 10000})
			defer r.Close()
			for range per[p] {
				if _, err := r.ReadMessage(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	return d, <-errs
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && strings.HasSuffix(fi.Name(), ".log") {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func rounded(xs []float64) []int64 {
	out := make([]int64, len(xs))
	for i, x := range xs {
		out[i] = int64(x)
	}
	return out
}

func roundedMB(xs []float64) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = fmt.Sprintf("%.1f", x/1e6)
	}
	return out
}

// logAppendSync appends n records in batches of 2000 from four goroutines
// straight to a partition log, each waiting for its fsync (acks=all without
// the network and the client), and returns records/s and log bytes per
// record.
func logAppendSync(dir string, n int, value []byte) (float64, float64, error) {
	p, err := storage.OpenPartition(dir, storage.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, true)
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	defer p.Close()
	const writers, perBatch = 4, 2000
	batches := n / perBatch
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := time.Now()
	for w := range writers {
		batch := recordBatch(perBatch, value)
		wg.Go(func() {
			for i := w; i < batches; i += writers {
				_, next, err := p.Append(batch, time.Now())
				if err == nil {
					err = p.Sync(next)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, err
	}
	recs := float64(batches * perBatch)
	return recs / d.Seconds(), float64(p.Size()) / recs, nil
}

// recordBatch encodes an uncompressed magic v2 batch of n copies of value,
// as a producer would.
func recordBatch(n int, value []byte) []byte {
	var recs []byte
	for i := range n {
		r := kmsg.NewRecord()
		r.OffsetDelta, r.TimestampDelta64 = int32(i), 0
		r.Value = value
		// Length is the size of what follows it; encode once to learn it.
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		recs = r.AppendTo(recs)
	}
	rb := kmsg.NewRecordBatch()
	rb.Magic = 2
	rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = -1, -1, -1
	rb.FirstTimestamp = time.Now().UnixMilli()
	rb.MaxTimestamp = rb.FirstTimestamp
	rb.LastOffsetDelta, rb.NumRecords = int32(n-1), int32(n)
	rb.Records = recs
	rb.Length = int32(49 + len(recs))
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// kafkaGoConnConsume reads with kafka-go's Conn and explicit offsets, one
// connection per partition: how Sluice's direct source reads.
func kafkaGoConnConsume(addr, topic string, n int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, partitions)
	start := time.Now()
	for p := range partitions {
		want := n / partitions
		if p < n%partitions {
			want++
		}
		wg.Go(func() {
			conn, err := kafka.DialLeader(ctx, "tcp", addr, topic, p)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			for off, got := int64(0), 0; got < want; {
				if _, err := conn.Seek(off, kafka.SeekAbsolute); err != nil {
					errs <- err
					return
				}
				batch := conn.ReadBatch(1, 16<<20)
				for got < want {
					m, err := batch.ReadMessage()
					if err != nil {
						break
					}
					off = m.Offset + 1
					got++
				}
				if err := batch.Close(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	return d, <-errs
}
