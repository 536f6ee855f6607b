package engine_test

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sources/generate"
)

// progress counts what the transform has finished, so the sink can wait
// for the batch read ahead.
type progress struct {
	mu      sync.Mutex
	batches int
	records int
	changed chan struct{} // closed and replaced at every change
}

func newProgress() *progress { return &progress{changed: make(chan struct{})} }

func (p *progress) add(records int) {
	p.mu.Lock()
	p.batches++
	p.records += records
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// waitFor waits until done holds for the batches and records transformed.
func (p *progress) waitFor(ctx context.Context, done func(batches, records int) bool) error {
	for {
		p.mu.Lock()
		ok, ch := done(p.batches, p.records), p.changed
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// heapInUse collects garbage and returns the live heap.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// padTransform gives every record a valueSize-byte value (the generated
// decimal, zero-padded), from one buffer per batch.
type padTransform struct {
	valueSize int
	done      *progress
}

func (t padTransform) Process(_ context.Context, in []engine.Record) ([]engine.Record, []engine.Rejected, error) {
	out := make([]engine.Record, len(in))
	buf := make([]byte, len(in)*t.valueSize)
	for i, r := range in {
		v := buf[i*t.valueSize : (i+1)*t.valueSize : (i+1)*t.valueSize]
		copy(v[t.valueSize-len(r.Value):], r.Value)
		r.Value = v
		out[i] = r
	}
	t.done.add(len(in))
	return out, nil, nil
}
func (padTransform) Close() error { return nil }

// heapSink discards what it is given and, at every commit, waits until the
// batch after it is read and transformed (or the input is used up), then
// collects garbage and samples the live heap: what the pipeline holds at
// its fullest, the batch being committed and the one read ahead. Without
// the wait a sample caught the read-ahead at whatever point the scheduler
// had let it reach, a batch's worth of noise between samples.
type heapSink struct {
	done    *progress
	total   int // records the source holds
	samples []uint64
	records int
	commits int
}

func (s *heapSink) Open(context.Context, string) (uint64, engine.Positions, error) {
	return 0, nil, nil
}
func (s *heapSink) Write(_ context.Context, _ uint64, recs []engine.Record) error {
	s.records += len(recs)
	return nil
}
func (s *heapSink) Commit(ctx context.Context, _ uint64, _ engine.Positions) error {
	s.commits++
	err := s.done.waitFor(ctx, func(batches, records int) bool {
		return batches > s.commits || records == s.total
	})
	if err != nil {
		return err
	}
	s.samples = append(s.samples, heapInUse())
	return nil
}
func (s *heapSink) Abort(context.Context, uint64) error { return nil }
func (s *heapSink) Close() error                        { return nil }

// steadySource samples the live heap when a Next starts while a batch is
// in flight and more input waits, in the first and the last tenth of the
// input (a collection per batch all through made the test twice as slow).
// The loop has then taken the batch it works on and dropped the one
// before, and nothing is read ahead yet, so every sample sees the same
// thing: one batch. Growth between samples is a leak, not the scheduler.
type steadySource struct {
	*generate.Source
	total    int
	returned int
	// first and last are the samples of the first and the last tenth.
	first, last []uint64
}

func (s *steadySource) Next(ctx context.Context, l engine.Limits) ([]engine.Record, engine.Positions, error) {
	switch tenth := s.total / 10; {
	case s.returned > 0 && s.returned <= tenth:
		s.first = append(s.first, heapInUse())
	case s.returned < s.total && s.returned >= s.total-tenth:
		s.last = append(s.last, heapInUse())
	}
	recs, until, err := s.Source.Next(ctx, l)
	s.returned += len(recs)
	return recs, until, err
}

// Reading ahead holds at most one batch beyond the one in flight: over a
// run of a hundred batches the live heap, sampled with the read-ahead
// batch complete, stays below two batches' worth plus slack; and the heap
// with one batch in flight does not grow from the first tenth of the run
// to the last.
func TestMemoryStaysBounded(t *testing.T) {
	const (
		count       = 2_000_000
		partitions  = 4
		perPart     = 5_000 // 20,000 records a batch, 100 batches
		valueSize   = 100
		batchRecs   = partitions * perPart
		recordSize  = int(unsafe.Sizeof(engine.Record{}))
		generated   = 16      // generate's value and key bytes per record, rounded up
		fixedSlack  = 6 << 20 // the test binary's own heap
		growthSlack = 2 << 20
		// runWait bounds the run: 2M records through -race with two
		// forced collections per batch took up to a minute on a 2-core
		// machine under a load average of 30.
		runWait = 5 * time.Minute
	)
	if count < 10*batchRecs {
		t.Fatal("the run must be at least ten batches")
	}
	// A batch as the transform leaves it, and as the source returned it
	// (both live while the read-ahead batch is transformed).
	perBatch := batchRecs * (recordSize + valueSize + recordSize + generated)
	bound := uint64(2*perBatch + fixedSlack)

	gen, err := generate.New(generate.Config{Topic: "g", Count: count, Partitions: partitions, Keys: 16})
	if err != nil {
		t.Fatal(err)
	}
	src := &steadySource{Source: gen, total: count}
	done := newProgress()
	sink := &heapSink{done: done, total: count}
	p, _ := engine.New(engine.Config{Name: "memory", Delivery: engine.ExactlyOnce, Interval: 0,
		MaxRecordsPerPartition: perPart, IdleExit: time.Millisecond, Logger: quiet,
		Source: src, Transforms: []engine.Transform{padTransform{valueSize: valueSize, done: done}}, Sink: sink})
	if err := runWithin(t, context.Background(), p, runWait); err != nil {
		t.Fatal(err)
	}
	if sink.records != count {
		t.Fatalf("%d records reached the sink, want %d", sink.records, count)
	}
	n := len(sink.samples)
	if n < 10 {
		t.Fatalf("only %d commits", n)
	}
	peak := slices.Max(sink.samples)
	t.Logf("heap in use at %d commits, with the next batch read ahead: peak %d MiB; bound %d MiB",
		n, peak>>20, bound>>20)
	if peak > bound {
		t.Errorf("heap in use peaked at %d bytes; two batches of %d records with slack are %d", peak, batchRecs, bound)
	}
	if len(src.first) < 5 || len(src.last) < 5 {
		t.Fatalf("only %d and %d samples with one batch in flight in the first and the last tenth", len(src.first), len(src.last))
	}
	first, last := slices.Max(src.first), slices.Max(src.last)
	t.Logf("heap in use with one batch in flight: first tenth %d MiB over %d reads, last tenth %d MiB over %d",
		first>>20, len(src.first), last>>20, len(src.last))
	if last > first+growthSlack {
		t.Errorf("heap in use with one batch in flight grew from %d bytes in the first tenth of the run to %d in the last", first, last)
	}
}
