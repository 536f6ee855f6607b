package engine_test

import (
	"context"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sources/generate"
)

// padTransform gives every record a valueSize-byte value (the generated
// decimal, zero-padded), from one buffer per batch.
type padTransform struct{ valueSize int }

func (t padTransform) Process(_ context.Context, in []engine.Record) ([]engine.Record, []engine.Rejected, error) {
	out := make([]engine.Record, len(in))
	buf := make([]byte, len(in)*t.valueSize)
	for i, r := range in {
		v := buf[i*t.valueSize : (i+1)*t.valueSize : (i+1)*t.valueSize]
		copy(v[t.valueSize-len(r.Value):], r.Value)
		r.Value = v
		out[i] = r
	}
	return out, nil, nil
}
func (padTransform) Close() error { return nil }

// heapSink discards what it is given and, at every commit, collects
// garbage and samples the live heap: what the pipeline holds at that
// moment, the batch being committed and the one read ahead.
type heapSink struct {
	samples []uint64
	records int
}

func (s *heapSink) Open(context.Context, string) (uint64, engine.Positions, error) {
	return 0, nil, nil
}
func (s *heapSink) Write(_ context.Context, _ uint64, recs []engine.Record) error {
	s.records += len(recs)
	return nil
}
func (s *heapSink) Commit(context.Context, uint64, engine.Positions) error {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	s.samples = append(s.samples, m.HeapInuse)
	return nil
}
func (s *heapSink) Abort(context.Context, uint64) error { return nil }
func (s *heapSink) Close() error                        { return nil }

// Reading ahead holds at most one batch beyond the one in flight: over a
// run of a hundred batches the live heap stays below two batches' worth
// plus slack, and does not grow from the first tenth of the run to the
// last.
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
	)
	if count < 10*batchRecs {
		t.Fatal("the run must be at least ten batches")
	}
	// A batch as the transform leaves it, and as the source returned it
	// (both live while the read-ahead batch is transformed).
	perBatch := batchRecs * (recordSize + valueSize + recordSize + generated)
	bound := uint64(2*perBatch + fixedSlack)

	src, err := generate.New(generate.Config{Topic: "g", Count: count, Partitions: partitions, Keys: 16})
	if err != nil {
		t.Fatal(err)
	}
	sink := &heapSink{}
	p, _ := engine.New(engine.Config{Name: "memory", Delivery: engine.ExactlyOnce, Interval: 0,
		MaxRecordsPerPartition: perPart, IdleExit: time.Millisecond, Logger: quiet,
		Source: src, Transforms: []engine.Transform{padTransform{valueSize: valueSize}}, Sink: sink})
	if err := runFor(t, context.Background(), p); err != nil {
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
	first, last := slices.Max(sink.samples[:n/10]), slices.Max(sink.samples[n-n/10:])
	t.Logf("heap in use over %d commits: peak %d MiB, first tenth %d MiB, last tenth %d MiB; bound %d MiB",
		n, peak>>20, first>>20, last>>20, bound>>20)
	if peak > bound {
		t.Errorf("heap in use peaked at %d bytes; two batches of %d records with slack are %d", peak, batchRecs, bound)
	}
	if last > first+growthSlack {
		t.Errorf("heap in use grew from %d bytes in the first tenth of the run to %d in the last", first, last)
	}
}
