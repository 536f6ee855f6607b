package engine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// recycleSource is fakeSource with Recycler: its batches are copied into
// the slices handed back, and each Recycle is checked against the sink.
type recycleSource struct {
	*fakeSource
	sink *orderSink

	mu       sync.Mutex
	issued   map[*engine.Record]bool // first element of every slice Next returned
	spare    []engine.Record
	recycled int
	reused   int
}

func (s *recycleSource) Next(ctx context.Context, l engine.Limits) ([]engine.Record, engine.Positions, error) {
	recs, until, err := s.fakeSource.Next(ctx, l)
	if err != nil || len(recs) == 0 {
		return recs, until, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]engine.Record, 0, len(recs))
	if cap(s.spare) >= len(recs) {
		out, s.spare = s.spare[:0], nil
		s.reused++
	}
	out = append(out, recs...)
	s.issued[&out[:1][0]] = true
	return out, until, nil
}

func (s *recycleSource) Recycle(recs []engine.Record) {
	defer s.enter("Recycle")()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(recs) == 0 || !s.issued[&recs[:1][0]] {
		s.t.Errorf("Recycle of a slice Next never returned")
		return
	}
	// Its batch must be committed: the sink holds positions past every
	// record in it.
	s.sink.mu.Lock()
	for _, r := range recs {
		if s.sink.at[engine.TopicPartition{Topic: r.Topic, Partition: r.Partition}] <= r.Offset {
			s.t.Errorf("Recycle of a batch not committed: %s/%d offset %d", r.Topic, r.Partition, r.Offset)
		}
	}
	s.sink.mu.Unlock()
	delete(s.issued, &recs[:1][0])
	s.recycled++
	s.spare = recs
}

// The engine hands a batch's slice back to a Recycler source only once the
// batch is committed, also when writes and commits fail and batches are
// recomputed, and never when a transform ran on it.
func TestRecyclerGetsCommittedBatchesBack(t *testing.T) {
	const prob = 0.08
	for _, transforms := range []bool{false, true} {
		src := &recycleSource{fakeSource: newFakeSource(t, 3, 400), issued: map[*engine.Record]bool{}}
		sink := newOrderSink(t)
		sink.writeFault, sink.commitFault, sink.lostAck = newChance(2, prob), newChance(3, prob), newChance(4, prob)
		src.sink = sink
		var ts []engine.Transform
		if transforms {
			ts = []engine.Transform{flakyTransform{}}
		}
		p, err := engine.New(engine.Config{Name: "recycle", Delivery: engine.ExactlyOnce, MaxRecordsPerPartition: 7,
			IdleExit: 20 * time.Millisecond, MinBackoff: time.Millisecond, Logger: quiet,
			Source: src, Transforms: ts, Sink: sink})
		if err != nil {
			t.Fatal(err)
		}
		if err := runFor(t, context.Background(), p); err != nil {
			t.Fatal(err)
		}
		sink.checkExactlyOnce(t, src.fakeSource)
		switch {
		case transforms && src.recycled != 0:
			t.Fatalf("with a transform, %d slices were handed back", src.recycled)
		case !transforms && (src.recycled < 10 || src.reused < 10):
			t.Fatalf("%d slices handed back, %d reused; want most batches' slices reused", src.recycled, src.reused)
		}
	}
}
