// Command ingest measures records/s from the built-in broker through a
// Kafka source into a sink, exactly-once, for each ingestion mode, beside
// the generate source into the same sink (the engine and sink's own
// ceiling), and prints one table. 100-byte records. The sink is the file
// sink, or with -sink kafka the Kafka sink writing back to the same broker
// in one transaction per batch.
//
//	go run ./bench/ingest [-records 1000000] [-partitions 4] [-runs 3] [-sink file|kafka]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/sinks/file"
	kafkasink "github.com/sluicehq/sluice/sinks/kafka"
	"github.com/sluicehq/sluice/sources/generate"
	"github.com/sluicehq/sluice/sources/kafka"
)

const recordBytes = 100

func main() {
	records := flag.Int("records", 1_000_000, "records per run")
	partitions := flag.Int("partitions", 4, "topic partitions")
	runs := flag.Int("runs", 3, "runs per row (the median is printed)")
	modes := flag.String("modes", "generate,direct,receiver", "rows to measure")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measured runs to this file")
	sinkKind := flag.String("sink", "file", "file (raw part files) or kafka (a topic on the same broker)")
	flag.Parse()
	quiet := slog.New(slog.DiscardHandler)

	dir, err := os.MkdirTemp("", "sluice-bench-ingest-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	b, err := broker.Open(filepath.Join(dir, "broker"), broker.Options{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go b.Serve(l)
	addr := l.Addr().String()
	fill(addr, *records, int32(*partitions))

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	type row struct {
		name string
		rate float64
	}
	var rows []row
	for _, mode := range strings.Split(*modes, ",") {
		var rates []float64
		for run := range *runs {
			out := filepath.Join(dir, fmt.Sprintf("out-%s-%d", mode, run))
			var src engine.Source
			switch mode {
			case "generate":
				src, err = generate.New(pipelines.GenerateSource{Topic: "g", Count: int64(*records), Partitions: int32(*partitions)})
			case "direct":
				src, err = kafka.NewDirect(kafka.DirectConfig{Conn: kafka.Connection{Brokers: []string{addr}},
					Topics: []string{"bench"}, Start: "earliest", Pipeline: "bench", Logger: quiet})
			case "receiver":
				src, err = kafka.NewReceiver(kafka.ReceiverConfig{Conn: kafka.Connection{Brokers: []string{addr}},
					Topics: []string{"bench"}, Start: "earliest", Group: fmt.Sprintf("bench-%d", run),
					BlockInterval: 200 * time.Millisecond, WALDir: filepath.Join(dir, fmt.Sprintf("wal-%d", run)),
					Delivery: engine.ExactlyOnce, Pipeline: "bench", Logger: quiet})
			default:
				log.Fatalf("unknown mode %q", mode)
			}
			if err != nil {
				log.Fatal(err)
			}
			var sink engine.Sink
			switch *sinkKind {
			case "file":
				sink, err = file.New(pipelines.FileSink{Path: out, Format: "raw"})
			case "kafka":
				sink, err = kafkasink.New(kafkasink.Config{Brokers: []string{addr}, Topic: fmt.Sprintf("out-%s-%d", mode, run), Logger: quiet})
			default:
				log.Fatalf("unknown sink %q: use file or kafka", *sinkKind)
			}
			if err != nil {
				log.Fatal(err)
			}
			rates = append(rates, measure(src, sink, fmt.Sprintf("bench-%s-%d", mode, run), *records, quiet))
		}
		sort.Float64s(rates)
		rows = append(rows, row{mode, rates[len(rates)/2]})
	}
	fmt.Printf("\n%d records of %d bytes, %d partitions, exactly-once into the %s sink, median of %d runs\n\n",
		*records, recordBytes, *partitions, *sinkKind, *runs)
	fmt.Printf("| %-10s | %14s | %18s |\n", "source", "records/s", "vs generate")
	fmt.Printf("|%s|%s|%s|\n", "------------", "----------------", "--------------------")
	base := rows[0].rate
	for _, r := range rows {
		fmt.Printf("| %-10s | %14.0f | %17.2fx |\n", r.name, r.rate, r.rate/base)
	}
}

// fill creates topic "bench" and produces n records with acks=1.
func fill(addr string, n int, partitions int32) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("bench"),
		kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	t := kmsg.NewCreateTopicsRequestTopic()
	t.Topic, t.NumPartitions, t.ReplicationFactor = "bench", partitions, 1
	req.Topics = append(req.Topics, t)
	if _, err := req.RequestWith(context.Background(), cl); err != nil {
		log.Fatal(err)
	}
	value := make([]byte, recordBytes)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	ctx := context.Background()
	for range n {
		cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				log.Fatal(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		log.Fatal(err)
	}
}

// measure runs src into sink as pipeline name until n records are
// committed.
func measure(src engine.Source, sink engine.Sink, name string, n int, logger *slog.Logger) float64 {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	counted := &countingSink{Sink: sink, want: n, done: cancel}
	p, err := engine.New(engine.Config{Name: name, Delivery: engine.ExactlyOnce,
		MaxRecordsPerPartition: 50_000, Logger: logger, Source: src, Sink: counted})
	if err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	if err := p.Run(ctx); err != nil {
		log.Fatal(err)
	}
	took := time.Since(start)
	if counted.got < n {
		log.Fatalf("only %d of %d records committed", counted.got, n)
	}
	return float64(n) / took.Seconds()
}

// countingSink stops the pipeline once want records are committed.
type countingSink struct {
	engine.Sink
	want, got, staged int
	done              func()
}

func (s *countingSink) Write(ctx context.Context, epoch uint64, recs []engine.Record) error {
	s.staged += len(recs)
	return s.Sink.Write(ctx, epoch, recs)
}

func (s *countingSink) Commit(ctx context.Context, epoch uint64, until engine.Positions) error {
	if err := s.Sink.Commit(ctx, epoch, until); err != nil {
		return err
	}
	s.got += s.staged
	s.staged = 0
	if s.got >= s.want {
		s.done()
	}
	return nil
}
