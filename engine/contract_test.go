package engine_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// The threading contracts of engine/component.go, checked while the
// overlapped pipeline runs with failures injected at every step. Each fake
// keeps its contract state in plain fields, without a lock, as the
// contract allows: under -race, a call the engine made on another
// goroutine without ordering it after the previous one is reported even
// when it happened not to overlap. Calls that do overlap are reported by
// exclusive.
func TestComponentContracts(t *testing.T) {
	const prob = 0.08
	for _, d := range []engine.Delivery{engine.ExactlyOnce, engine.AtLeastOnce} {
		for _, interval := range []time.Duration{0, time.Millisecond} {
			t.Run(fmt.Sprintf("%s/interval=%v", d, interval), func(t *testing.T) {
				src := newFakeSource(t, 3, 300)
				src.nextFault = newChance(11, prob)
				source := &contractSource{t: t, inner: backlogSource{src}}
				chain := &transformChain{calls: exclusive{t: t, what: "Transform.Process"}}
				fault := newChance(12, prob)
				transforms := []engine.Transform{
					&contractTransform{t: t, n: 1, chain: chain, fault: fault},
					&contractTransform{t: t, n: 2, chain: chain},
				}
				inner := newOrderSink(t)
				inner.writeFault, inner.commitFault, inner.lostAck = newChance(13, prob), newChance(14, prob), newChance(15, prob)
				sink := &contractSink{t: t, inner: inner, calls: exclusive{t: t, what: "Sink"}}
				p, err := engine.New(engine.Config{
					Name: "contract", Delivery: d, Interval: interval, MaxRecordsPerPartition: 7,
					IdleExit: 20 * time.Millisecond, MinBackoff: time.Millisecond, Logger: quiet,
					Source: source, Transforms: transforms, Sink: sink,
					Checkpoints: memCheckpoints{d: &durable{}},
				})
				if err != nil {
					t.Fatal(err)
				}
				if err := runFor(t, context.Background(), p); err != nil {
					t.Fatal(err)
				}
				for name, c := range map[string]*chance{"Next": src.nextFault, "Process": fault,
					"Write": inner.writeFault, "Commit": inner.commitFault, "lost acknowledgement": inner.lostAck} {
					if c.injected.Load() == 0 {
						t.Errorf("no %s failure was injected; the test proves less than it claims", name)
					}
				}
				inner.checkExactlyOnce(t, src)
				if source.open {
					t.Error("Run returned with the source open")
				}
				for _, tr := range transforms {
					if c := tr.(*contractTransform).closed; c != 1 {
						t.Errorf("transform closed %d times, want once", c)
					}
				}
				if sink.closed != 1 {
					t.Errorf("sink closed %d times, want once", sink.closed)
				}
			})
		}
	}
}

// exclusive fails the test when two calls it guards overlap. A call
// yields while inside, so that an engine making overlapping calls gives
// the other one the chance to arrive.
type exclusive struct {
	t    *testing.T
	what string
	busy atomic.Int32
}

func (x *exclusive) enter(method string) func() {
	if x.busy.Add(1) != 1 {
		x.t.Errorf("%s.%s called while another %s call runs", x.what, method, x.what)
	}
	runtime.Gosched()
	return func() { x.busy.Add(-1) }
}

// contractSource checks the Source lifecycle: Next, Backlog and Committed
// only while open, Open only while closed. fakeSource checks that no two
// calls overlap.
type contractSource struct {
	t     *testing.T
	inner backlogSource
	open  bool // no lock: the engine orders every Source call
}

func (s *contractSource) Open(ctx context.Context, from engine.Positions) error {
	if s.open {
		s.t.Error("Source.Open called while the source is open")
	}
	err := s.inner.Open(ctx, from)
	s.open = err == nil
	return err
}

func (s *contractSource) Next(ctx context.Context, l engine.Limits) ([]engine.Record, engine.Positions, error) {
	s.mustBeOpen("Next")
	return s.inner.Next(ctx, l)
}

func (s *contractSource) Backlog() (int64, bool) {
	s.mustBeOpen("Backlog")
	return s.inner.Backlog()
}

func (s *contractSource) Committed(ctx context.Context, until engine.Positions) error {
	s.mustBeOpen("Committed")
	return s.inner.Committed(ctx, until)
}

func (s *contractSource) Close() error {
	s.mustBeOpen("Close")
	s.open = false
	return s.inner.Close()
}

func (s *contractSource) mustBeOpen(method string) {
	if !s.open {
		s.t.Errorf("Source.%s called while the source is closed", method)
	}
}

// transformChain is what the transforms of one chain share.
type transformChain struct {
	calls exclusive
	// last is the transform whose Process last succeeded, 0 after a
	// failure. No lock: the engine orders every call of the chain.
	last int
}

// contractTransform passes records through (failing batches by chance)
// and checks that no Process of the chain overlaps another, that a batch
// reaches transform n only from transform n-1, and that nothing is
// processed after Close.
type contractTransform struct {
	t     *testing.T
	n     int // place in the chain, from 1
	chain *transformChain
	fault *chance
	// No lock: the engine orders every call of the chain.
	closed int
}

func (c *contractTransform) Process(_ context.Context, in []engine.Record) ([]engine.Record, []engine.Rejected, error) {
	defer c.chain.calls.enter(fmt.Sprintf("Process (transform %d)", c.n))()
	if c.closed > 0 {
		c.t.Errorf("transform %d: Process after Close", c.n)
	}
	if c.n > 1 && c.chain.last != c.n-1 {
		c.t.Errorf("transform %d got a batch after transform %d", c.n, c.chain.last)
	}
	if err := c.fault.fail(); err != nil {
		c.chain.last = 0
		return nil, nil, err
	}
	c.chain.last = c.n
	return in, nil, nil
}

func (c *contractTransform) Close() error {
	c.closed++
	return nil
}

// contractSink checks the Sink contract around orderSink (which checks
// epoch order and contiguity): no two calls overlap; Write for an epoch
// only right after its predecessor committed (so never for e+1 before
// Commit(e) returned nil, or Open said e is committed); Commit only for
// the epoch written; after a failed Write or Commit, Abort or Open before
// anything else; nothing after Close.
type contractSink struct {
	t     *testing.T
	inner *orderSink
	calls exclusive
	// No lock: the engine makes every Sink call on its batch loop.
	committed uint64 // what the engine may know is committed
	written   uint64 // the epoch written since the last commit, abort or open; 0 none
	failed    bool   // a Write or Commit failed: Abort or Open must come next
	closed    int
}

func (s *contractSink) Open(ctx context.Context, pipeline string) (uint64, engine.Positions, error) {
	defer s.calls.enter("Open")()
	s.mustBeOpen("Open")
	epoch, at, err := s.inner.Open(ctx, pipeline)
	s.committed, s.written, s.failed = epoch, 0, false
	return epoch, at, err
}

func (s *contractSink) Write(ctx context.Context, epoch uint64, recs []engine.Record) error {
	defer s.calls.enter("Write")()
	s.mustBeOpen("Write")
	switch {
	case s.failed:
		s.t.Errorf("Sink.Write(%d) after a failure, before Abort or Open", epoch)
	case epoch != s.committed+1:
		s.t.Errorf("Sink.Write(%d) while epoch %d is the last known committed", epoch, s.committed)
	case s.written != 0 && s.written != epoch:
		s.t.Errorf("Sink.Write(%d) while epoch %d is written and not committed", epoch, s.written)
	}
	s.written = epoch
	err := s.inner.Write(ctx, epoch, recs)
	s.failed = err != nil
	return err
}

func (s *contractSink) Commit(ctx context.Context, epoch uint64, until engine.Positions) error {
	defer s.calls.enter("Commit")()
	s.mustBeOpen("Commit")
	if s.failed || s.written != epoch {
		s.t.Errorf("Sink.Commit(%d) with epoch %d written (failed: %v)", epoch, s.written, s.failed)
	}
	err := s.inner.Commit(ctx, epoch, until)
	if err != nil {
		s.failed = true
		return err
	}
	s.committed, s.written = epoch, 0
	return nil
}

func (s *contractSink) Abort(ctx context.Context, epoch uint64) error {
	defer s.calls.enter("Abort")()
	s.mustBeOpen("Abort")
	if epoch != s.committed+1 {
		s.t.Errorf("Sink.Abort(%d) while epoch %d is the last known committed", epoch, s.committed)
	}
	s.written, s.failed = 0, false
	return s.inner.Abort(ctx, epoch)
}

func (s *contractSink) Close() error {
	defer s.calls.enter("Close")()
	s.mustBeOpen("Close")
	s.closed++
	return s.inner.Close()
}

func (s *contractSink) mustBeOpen(method string) {
	if s.closed > 0 {
		s.t.Errorf("Sink.%s after Close", method)
	}
}
