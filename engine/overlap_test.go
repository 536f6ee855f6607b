package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// overlapWait bounds how long a test waits for something the overlapped
// loop must do (a Next to start, a run to finish) before failing.
const overlapWait = time.Minute

// runFor runs p until it returns or overlapWait passes.
func runFor(t *testing.T, ctx context.Context, p *engine.Pipeline) error {
	t.Helper()
	return runWithin(t, ctx, p, overlapWait)
}

// runWithin runs p until it returns or wait passes. A run that overstays is
// stopped before the test fails, so it cannot go on beside the next test
// (a test that measures the heap would count it).
func runWithin(t *testing.T, ctx context.Context, p *engine.Pipeline, wait time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(wait):
		cancel()
		select {
		case <-done:
		case <-time.After(overlapWait):
		}
		t.Fatalf("Run did not return within %v", wait)
		return nil
	}
}

// Under random failures of Next, the transform, Write and Commit (and
// commits whose acknowledgement is lost), epochs still commit strictly in
// order, each batch starts at the previous one's Until, the source is
// never called concurrently, and every record ends up committed once.
func TestOverlapKeepsOrderUnderFailures(t *testing.T) {
	const prob = 0.08
	for _, d := range []engine.Delivery{engine.ExactlyOnce, engine.AtLeastOnce} {
		for _, backlog := range []bool{false, true} {
			for _, interval := range []time.Duration{0, time.Millisecond} {
				t.Run(fmt.Sprintf("%s/backlogger=%v/interval=%v", d, backlog, interval), func(t *testing.T) {
					src := newFakeSource(t, 3, 400)
					src.nextFault = newChance(1, prob)
					var source engine.Source = src
					if backlog {
						source = backlogSource{src}
					}
					sink := newOrderSink(t)
					sink.writeFault, sink.commitFault, sink.lostAck = newChance(2, prob), newChance(3, prob), newChance(4, prob)
					transform := flakyTransform{fault: newChance(5, prob)}
					p, err := engine.New(engine.Config{
						Name: "order", Delivery: d, Interval: interval, MaxRecordsPerPartition: 7,
						IdleExit: 20 * time.Millisecond, MinBackoff: time.Millisecond, Logger: quiet,
						Source: source, Transforms: []engine.Transform{transform}, Sink: sink,
						Checkpoints: memCheckpoints{d: &durable{}},
					})
					if err != nil {
						t.Fatal(err)
					}
					if err := runFor(t, context.Background(), p); err != nil {
						t.Fatal(err)
					}
					for name, c := range map[string]*chance{"Next": src.nextFault, "transform": transform.fault,
						"Write": sink.writeFault, "Commit": sink.commitFault, "lost acknowledgement": sink.lostAck} {
						if c.injected.Load() == 0 {
							t.Errorf("no %s failure was injected; the test proves less than it claims", name)
						}
					}
					sink.checkExactlyOnce(t, src)
					if epoch, at := p.Committed(); epoch != sink.epoch || !at.Equal(sink.at) {
						t.Errorf("pipeline says %d %v, sink holds %d %v", epoch, at, sink.epoch, sink.at)
					}
				})
			}
		}
	}
}

// Next for batch e+1 starts while batch e is still committing: the sink's
// Commit(e) waits until the source has seen Next call e+1. The interval is
// an hour, so only "behind" (a Backlogger's backlog, or a read cut by the
// per-partition limit) can start the next read that early.
func TestNextOverlapsCommit(t *testing.T) {
	const batches, perBatch = 10, 10
	for _, backlog := range []bool{false, true} {
		t.Run(fmt.Sprintf("backlogger=%v", backlog), func(t *testing.T) {
			src := newFakeSource(t, 1, batches*perBatch)
			var source engine.Source = src
			if backlog {
				source = backlogSource{src}
			}
			sink := newOrderSink(t)
			sink.doneAt = src.total()
			failed := false
			sink.beforeCommit = func(ctx context.Context, epoch uint64) {
				if epoch >= batches || failed {
					return // nothing is left to read behind the last batch, or already reported
				}
				select {
				case <-src.nextStarted(int64(epoch) + 1):
				case <-time.After(overlapWait / 4):
					failed = true
					t.Errorf("Next for epoch %d did not start while epoch %d was committing", epoch+1, epoch)
				}
			}
			p, _ := engine.New(engine.Config{Name: "overlap", Delivery: engine.ExactlyOnce,
				Interval: time.Hour, MaxRecordsPerPartition: perBatch, Logger: quiet, Source: source, Sink: sink})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				<-sink.done
				cancel()
			}()
			if err := runFor(t, ctx, p); err != nil {
				t.Fatal(err)
			}
			sink.checkExactlyOnce(t, src)
			if epoch, _ := p.Committed(); epoch != batches {
				t.Fatalf("committed %d epochs, want %d", epoch, batches)
			}
		})
	}
}

// The engine calls Source.Committed only when no Next runs, even though
// batches overlap, and passes every acknowledgement on, the last one
// included. Commit(e) waits until Next for batch e+1 has started; that
// Next holds on until Commit(e) has returned and then gives a wrongly
// concurrent Committed(e) a moment to arrive, which fakeSource reports.
func TestSourceNeverCalledConcurrently(t *testing.T) {
	// graceForAWrongCall is how long Next waits for a Committed call that
	// must not come while it runs; nothing can be awaited instead, because
	// a correct engine never makes that call.
	const graceForAWrongCall = 20 * time.Millisecond
	const batches = 4
	src := newFakeSource(t, 2, batches*5)
	sink := newOrderSink(t)
	committed := make(map[uint64]chan struct{})
	for e := range uint64(batches) {
		committed[e+1] = make(chan struct{})
	}
	wrapped := &commitSignalSink{orderSink: sink, committed: committed}
	sink.beforeCommit = func(ctx context.Context, epoch uint64) {
		// Commit only once Next for the following batch runs, so a
		// Committed call right after this commit would overlap it.
		if epoch < batches {
			select {
			case <-src.nextStarted(int64(epoch) + 1):
			case <-time.After(overlapWait / 4):
				t.Errorf("Next for epoch %d did not start while epoch %d was committing", epoch+1, epoch)
			}
		}
	}
	src.beforeNext = func(ctx context.Context, n int64) {
		ch, ok := committed[uint64(n)-1]
		if !ok {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
		select {
		case <-time.After(graceForAWrongCall):
		case <-ctx.Done():
		}
	}
	p, _ := engine.New(engine.Config{Name: "serial", Delivery: engine.ExactlyOnce,
		MaxRecordsPerPartition: 5, IdleExit: 20 * time.Millisecond, Logger: quiet,
		Source: backlogSource{src}, Sink: wrapped})
	if err := runFor(t, context.Background(), p); err != nil {
		t.Fatal(err)
	}
	sink.checkExactlyOnce(t, src)
	_, at := p.Committed()
	src.mu.Lock()
	defer src.mu.Unlock()
	if !src.lastAck.Equal(at) {
		t.Fatalf("the source last heard %v committed; the sink holds %v", src.lastAck, at)
	}
}

// commitSignalSink closes committed[e] once Commit(e) has returned.
type commitSignalSink struct {
	*orderSink
	committed map[uint64]chan struct{}
}

func (s *commitSignalSink) Commit(ctx context.Context, epoch uint64, until engine.Positions) error {
	err := s.orderSink.Commit(ctx, epoch, until)
	if ch, ok := s.committed[epoch]; ok && err == nil {
		close(ch)
	}
	return err
}

// A stop while batch e commits and batch e+1 is read ahead finishes e,
// discards e+1 (it is read again on the next start) and still tells the
// source that e is committed.
func TestStopDiscardsTheBatchReadAhead(t *testing.T) {
	src := newFakeSource(t, 1, 100)
	sink := newOrderSink(t)
	ctx, cancel := context.WithCancel(context.Background())
	sink.beforeCommit = func(_ context.Context, epoch uint64) {
		if epoch == 1 {
			<-src.nextStarted(2) // batch 2 is being read ahead
			cancel()
		}
	}
	p, _ := engine.New(engine.Config{Name: "stop", Delivery: engine.ExactlyOnce,
		MaxRecordsPerPartition: 10, Logger: quiet, Source: backlogSource{src}, Sink: sink})
	if err := runFor(t, ctx, p); err != nil {
		t.Fatalf("a stop must return nil, got %v", err)
	}
	epoch, at := p.Committed()
	if epoch != 1 || len(sink.visible) != 10 {
		t.Fatalf("epoch %d with %d records visible; want the batch in flight (1, 10) and nothing read ahead", epoch, len(sink.visible))
	}
	if !src.lastAck.Equal(at) {
		t.Fatalf("the source last heard %v committed; the sink holds %v", src.lastAck, at)
	}

	// The next run starts from the sink and reads what was discarded.
	sink.beforeCommit = nil
	sink.doneAt = src.total()
	p2, _ := engine.New(engine.Config{Name: "stop", Delivery: engine.ExactlyOnce,
		MaxRecordsPerPartition: 10, IdleExit: 20 * time.Millisecond, Logger: quiet, Source: backlogSource{src}, Sink: sink})
	if err := runFor(t, context.Background(), p2); err != nil {
		t.Fatal(err)
	}
	sink.checkExactlyOnce(t, src)
}
