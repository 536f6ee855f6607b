package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// warmUp is the start of each latency row that is not measured: the
	// producer's and consumer's connections and sluice's first batches.
	warmUp = 2 * time.Second
	// tick is how often the producer sends a burst and the file watcher
	// lists the output directory.
	tick = 5 * time.Millisecond
	// drainWait is how long the pipeline may take to deliver what was
	// produced once the producer stops.
	drainWait = 30 * time.Second
)

// latencyRow is one line of the latency table.
type latencyRow struct {
	mode, sink    string
	rate          int
	p50, p99, max time.Duration
	measured      int
	problem       string
}

// measureLatency runs a continuous pipeline (batch interval 0) for mode
// into sink while a producer writes timestamped records at a fixed rate,
// and reports how long each took from Produce to being readable in the
// sink's output.
func (b *bench) measureLatency(mode, sink string) latencyRow {
	settleDisk()
	r := latencyRow{mode: mode, sink: sink, rate: b.cfg.latencyRate}
	log.Printf("latency: %s → %s at %d records/s for %v", mode, sink, r.rate, b.cfg.latency)
	if err := b.latency(&r); err != nil {
		log.Printf("latency %s → %s: %v", mode, sink, err)
		r.problem = err.Error()
		return r
	}
	log.Printf("latency %s → %s: p50 %v, p99 %v, max %v over %d records", mode, sink,
		r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.max.Round(time.Microsecond), r.measured)
	return r
}

func (b *bench) latency(r *latencyRow) error {
	name := "lat-" + r.mode + "-" + r.sink
	// A topic of its own: a start: earliest pipeline reads nothing older.
	if err := createTopic(b.addr, name, b.cfg.partitions); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	obs := &observer{first: make(chan struct{})}
	var sinkYAML string
	switch r.sink {
	case "kafka":
		out := "lat-out-" + r.mode
		// Created before the consumer subscribes, so it does not wait for
		// the sink to create it and for its next metadata refresh.
		if err := createTopic(b.addr, out, b.cfg.partitions); err != nil {
			return err
		}
		sinkYAML = fmt.Sprintf("{kafka: {brokers: [%q], topic: %s}}", b.addr, out)
		go obs.watchTopic(ctx, b.addr, out)
	case "file":
		dir := filepath.Join(b.dir, "lat-out-"+r.mode+"-file")
		// One part file per epoch, visible at its commit: with the default
		// roll a part file appears only when it rolls (up to a minute).
		sinkYAML = fmt.Sprintf("{file: {path: %q, format: raw, roll: {per-epoch: true}}}", dir)
		defer os.RemoveAll(dir)
		go obs.watchDir(ctx, dir)
	}
	spec := pipeline{name: name, source: b.kafkaSource(name, r.mode, name), batch: b.cfg.batch("0"), sink: sinkYAML}
	c, err := b.startSluice(spec, name, nil)
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Join(b.dir, "data-"+name))
	defer func() {
		if !c.hasExited() {
			c.kill()
		}
	}()
	p, err := newPacer(b.addr, name, r.rate)
	if err != nil {
		return err
	}
	defer p.cl.Close()

	// Until the first record comes out sluice is still starting; none of
	// that is measured.
	startBy := time.Now().Add(time.Minute)
	p.until(func() bool { return obs.started() || c.hasExited() || time.Now().After(startBy) })
	if c.hasExited() {
		return c.failed(fmt.Errorf("sluice run exited while starting: %v", c.err))
	}
	if !obs.started() {
		return c.failed(errors.New("nothing came out within a minute of starting sluice run"))
	}
	up := time.Now()
	p.until(func() bool { return time.Since(up) >= b.cfg.latency || c.hasExited() })
	sent, err := p.flush()
	if err != nil {
		return err
	}
	for drainBy := time.Now().Add(drainWait); obs.count() < sent && time.Now().Before(drainBy) && !c.hasExited(); {
		time.Sleep(10 * time.Millisecond)
	}
	if c.hasExited() {
		return c.failed(fmt.Errorf("sluice run exited while running: %v", c.err))
	}
	if err := c.stop(30 * time.Second); err != nil {
		return c.failed(fmt.Errorf("stopping with SIGTERM: %w", err))
	}
	cancel()
	return r.summarize(obs, sent, up.Add(warmUp))
}

// summarize fills in the percentiles of the records produced from
// measureFrom on, once every record sent came out exactly once.
func (r *latencyRow) summarize(obs *observer, sent int, measureFrom time.Time) error {
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.err != nil {
		return obs.err
	}
	switch got := len(obs.samples); {
	case got < sent:
		return fmt.Errorf("incomplete: %d of %d records came out within %v of the producer stopping", got, sent, drainWait)
	case got > sent:
		return fmt.Errorf("duplicates: %d records came out, %d were produced", got, sent)
	}
	var lat []time.Duration
	for _, s := range obs.samples {
		if s.produced >= measureFrom.UnixNano() {
			lat = append(lat, s.latency)
		}
	}
	if len(lat) == 0 {
		return fmt.Errorf("no records after the %v warm-up: give -latency more than that", warmUp)
	}
	slices.Sort(lat)
	r.p50, r.p99, r.max, r.measured = percentile(lat, 0.50), percentile(lat, 0.99), lat[len(lat)-1], len(lat)
	return nil
}

// percentile is the nearest-rank percentile of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// pacer produces timestamped records at a fixed rate in small bursts.
type pacer struct {
	cl    *kgo.Client
	rate  int
	start time.Time
	sent  int

	mu  sync.Mutex
	err error // the first failed produce
}

func newPacer(addr, topic string, rate int) (*pacer, error) {
	// No linger: a record waits in the producer only for the one before it.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		return nil, err
	}
	return &pacer{cl: cl, rate: rate, start: time.Now()}, nil
}

// until produces every tick what the rate says is due since the pacer
// started, until done says stop.
func (p *pacer) until(done func() bool) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for !done() {
		<-t.C
		due := int(time.Since(p.start).Seconds() * float64(p.rate))
		for ; p.sent < due; p.sent++ {
			p.cl.Produce(context.Background(), &kgo.Record{Value: stamped()}, p.produced)
		}
	}
}

func (p *pacer) produced(_ *kgo.Record, err error) {
	if err != nil {
		p.mu.Lock()
		p.err = cmp.Or(p.err, err)
		p.mu.Unlock()
	}
}

// flush waits for every record to be acknowledged and returns how many
// were sent.
func (p *pacer) flush() (int, error) {
	if err := p.cl.Flush(context.Background()); err != nil {
		return p.sent, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.sent, fmt.Errorf("latency producer: %w", p.err)
	}
	return p.sent, nil
}

// stamped is a recordBytes value starting with the current time as
// big-endian Unix nanoseconds.
func stamped() []byte {
	v := make([]byte, recordBytes)
	binary.BigEndian.PutUint64(v, uint64(time.Now().UnixNano()))
	for i := 8; i < len(v); i++ {
		v[i] = 'a' + byte(i%26)
	}
	return v
}

// observer collects, for every record that comes out of the pipeline, when
// it was produced and how long that took.
type observer struct {
	mu        sync.Mutex
	samples   []sample
	err       error
	first     chan struct{} // closed at the first record
	firstOnce sync.Once
}

type sample struct {
	produced int64 // Unix nanoseconds
	latency  time.Duration
}

func (o *observer) started() bool {
	select {
	case <-o.first:
		return true
	default:
		return false
	}
}

func (o *observer) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.samples)
}

// saw records values that became readable at now.
func (o *observer) saw(now time.Time, values ...[]byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, v := range values {
		if len(v) < 8 {
			o.err = cmp.Or(o.err, fmt.Errorf("an output value of %d bytes has no timestamp", len(v)))
			continue
		}
		ts := int64(binary.BigEndian.Uint64(v))
		o.samples = append(o.samples, sample{produced: ts, latency: time.Duration(now.UnixNano() - ts)})
	}
	if len(o.samples) > 0 {
		o.firstOnce.Do(func() { close(o.first) })
	}
}

func (o *observer) fail(err error) {
	o.mu.Lock()
	o.err = cmp.Or(o.err, err)
	o.mu.Unlock()
}

// watchTopic reads topic read_committed, as a downstream consumer of the
// Kafka sink would, until ctx ends.
func (o *observer) watchTopic(ctx context.Context, addr, topic string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		o.fail(err)
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		now := time.Now()
		for _, e := range fs.Errors() {
			if ctx.Err() == nil {
				o.fail(fmt.Errorf("reading %s: %w", topic, e.Err))
			}
			return
		}
		var values [][]byte
		fs.EachRecord(func(r *kgo.Record) { values = append(values, r.Value) })
		o.saw(now, values...)
	}
}

// watchDir lists dir every tick and reads each committed part file once,
// when it first appears: that is when a reader of the directory could see
// its records. Raw format makes each record recordBytes+1 bytes ('\n'),
// split by length because a timestamp byte may itself be '\n'.
func (o *observer) watchDir(ctx context.Context, dir string) {
	read := map[string]bool{}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		entries, err := os.ReadDir(dir)
		now := time.Now()
		if err != nil {
			continue // the sink has not created it yet
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), "part-") || read[e.Name()] {
				continue
			}
			read[e.Name()] = true
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				o.fail(err)
				return
			}
			if len(data)%(recordBytes+1) != 0 {
				o.fail(fmt.Errorf("%s: %d bytes is not a whole number of %d-byte lines", e.Name(), len(data), recordBytes+1))
				return
			}
			var values [][]byte
			for rec := range slices.Chunk(data, recordBytes+1) {
				values = append(values, bytes.TrimSuffix(rec, []byte{'\n'}))
			}
			o.saw(now, values...)
		}
	}
}
