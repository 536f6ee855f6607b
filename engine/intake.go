package engine

import (
	"context"
	"sync"
	"time"
)

// prepared is one batch read and transformed ahead of the batch loop.
type prepared struct {
	records []Record // the transform chain's output
	// input is the slice Next returned when the chain kept it as its
	// output (no transforms): the source may have it back once the batch
	// is committed (Recycler).
	input    []Record
	rejected []Rejected
	in       int // records the source returned
	until    Positions

	start  time.Time     // when Next was called (after any cadence wait)
	took   time.Duration // Next plus the transforms
	handed time.Time     // when the batch loop took it and the batch began

	readErr error // Next failed: reported at ActRead
	procErr error // a transform failed: reported at ActProcess
	// behind: more input is known to wait (or, for a source without
	// Backlogger, the read was cut by a limit), so the next read starts at
	// once instead of at the next interval tick.
	behind bool
	// idle: no records, and a Backlogger source reported a known backlog
	// of 0. Only idle reads count towards IdleExit.
	idle bool

	ticked bool       // the chain ran on no input (Ticker)
	state  StateBatch // the batch's state changes; nil without a StateBackend or when the chain did not run
}

// work is what the batch loop reports to the protocol as the records read:
// a tick that produced output, rejections, a failure or state changes
// counts as one, so it starts a batch that commits them.
func (b *prepared) work() int {
	if b.in > 0 || !b.ticked {
		return b.in
	}
	if len(b.records) > 0 || len(b.rejected) > 0 || b.procErr != nil || b.state != nil && !b.state.Empty() {
		return 1
	}
	return 0
}

// readRequest asks the intake for the next batch.
type readRequest struct {
	notBefore time.Time // the interval cadence; zero = at once
	limits    Limits
	recycle   []Record // a committed batch's input, for a Recycler source
}

// intake is the goroutine that owns the Source and the Transforms while the
// source is open: it reads and transforms batch e+1 while the batch loop
// writes, commits and acknowledges batch e. Because it alone calls the
// source (Next, Backlog, Committed) and the transforms, none of them is
// ever called concurrently. At most one request is outstanding and out has
// room for one batch, so at most two batches are in memory: the one the
// loop holds and the one prepared ahead.
type intake struct {
	p      *Pipeline
	ackCtx context.Context // bounds Committed; outlives a stop by drainTimeout

	req    chan readRequest
	out    chan *prepared
	acked  chan struct{} // a new acknowledgement is pending
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	ack Positions // the latest committed positions not yet passed to Committed

	requested bool // a request is outstanding; batch loop only

	lastRun time.Time // when the transforms last ran; intake only
}

// startIntake starts the intake goroutine for p's open source. Next and the
// transforms run on a child of ctx, so a stop ends them at once;
// acknowledgements run on ackCtx.
func (p *Pipeline) startIntake(ctx, ackCtx context.Context) *intake {
	ctx, cancel := context.WithCancel(ctx)
	in := &intake{
		p:      p,
		ackCtx: ackCtx,
		req:    make(chan readRequest, 1),
		out:    make(chan *prepared, 1),
		acked:  make(chan struct{}, 1),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go in.run(ctx)
	return in
}

// request asks for the next batch; the caller has taken the previous one.
func (in *intake) request(r readRequest) {
	in.requested = true
	in.req <- r // room for one; only one is ever outstanding
}

// take waits for the requested batch; ok is false if ctx ended first,
// reassigned is true if changed was closed first (a nil changed never is).
func (in *intake) take(ctx context.Context, changed <-chan struct{}) (b *prepared, ok, reassigned bool) {
	select {
	case <-ctx.Done():
		return nil, false, false
	case <-changed:
		return nil, false, true
	case b := <-in.out:
		in.requested = false
		return b, true, false
	}
}

// acknowledge hands until to the intake, which passes it to
// Source.Committed before its next Next (or at once when idle). A later
// acknowledgement replaces an earlier one not yet passed on: positions only
// grow, and each batch's Until covers every partition read so far.
func (in *intake) acknowledge(until Positions) {
	in.mu.Lock()
	in.ack = until.Clone()
	in.mu.Unlock()
	select {
	case in.acked <- struct{}{}:
	default:
	}
}

// stop ends the goroutine, waits for it, discards whatever it prepared and
// passes a pending acknowledgement on itself: once the goroutine is gone the
// caller is the source's only user.
func (in *intake) stop() {
	in.cancel()
	<-in.done
	in.applyAck()
}

func (in *intake) run(ctx context.Context) {
	defer close(in.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-in.acked:
			in.applyAck()
		case r := <-in.req:
			if !in.waitUntil(ctx, r.notBefore) {
				return
			}
			in.applyAck()
			if rc, ok := in.p.cfg.Source.(Recycler); ok && r.recycle != nil {
				rc.Recycle(r.recycle)
			}
			in.out <- in.read(ctx, r.limits) // room for one: never blocks
		}
	}
}

// waitUntil waits for t, passing acknowledgements on meanwhile; false if ctx
// ended first.
func (in *intake) waitUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-in.acked:
			in.applyAck()
		case <-timer.C:
			return true
		}
	}
}

func (in *intake) applyAck() {
	in.mu.Lock()
	until := in.ack
	in.ack = nil
	in.mu.Unlock()
	if until != nil {
		in.p.acknowledge(in.ackCtx, until)
	}
}

// read calls Next, asks a Backlogger how much waits and an Ender where
// its partitions end, and runs the transforms.
func (in *intake) read(ctx context.Context, l Limits) *prepared {
	src := in.p.cfg.Source
	b := &prepared{start: time.Now()}
	recs, until, err := src.Next(ctx, l)
	if err != nil {
		b.readErr = err
		return b
	}
	b.in, b.until = len(recs), until
	bl, isBacklogger := src.(Backlogger)
	var backlog int64
	var known bool
	if isBacklogger {
		backlog, known = bl.Backlog()
	}
	// Behind only with records in hand: a source that lists a backlog but
	// returned nothing (its fetch has not arrived) would otherwise be
	// polled back to back.
	if known {
		b.behind = len(recs) > 0 && backlog > 0
	} else {
		b.behind = hitLimit(recs, l)
	}
	b.idle = len(recs) == 0 && (!isBacklogger || known && backlog == 0)
	if e, ok := src.(Ender); ok {
		in.p.setEnds(e.Ends())
	}
	// Transforms map records (0..n outputs per input), so an empty read
	// needs no round trip to the plugins, unless a Ticker is due.
	b.ticked = len(recs) == 0 && in.p.tick > 0 && time.Since(in.lastRun) >= in.p.tick
	if len(recs) > 0 || b.ticked {
		in.lastRun = time.Now()
		pctx := ctx
		if st := in.p.cfg.State; st != nil {
			pctx, b.state = st.Begin(ctx)
		}
		b.records, b.rejected, b.procErr = in.p.process(pctx, recs)
		if b.work() > 0 {
			b.idle = false
		}
	}
	if len(in.p.cfg.Transforms) == 0 {
		b.input = recs
	}
	b.took = time.Since(b.start)
	return b
}

// hitLimit reports whether a read was cut by l: the whole batch reached
// MaxRecords, or some partition returned MaxRecordsPerPartition records.
// For sources without Backlogger that is the sign that more input waits.
func hitLimit(recs []Record, l Limits) bool {
	if l.MaxRecords > 0 && len(recs) >= l.MaxRecords {
		return true
	}
	limit := l.MaxRecordsPerPartition
	if limit <= 0 || len(recs) < limit {
		return false
	}
	counts := make(map[TopicPartition]int)
	for i := range recs {
		tp := TopicPartition{recs[i].Topic, recs[i].Partition}
		counts[tp]++
		if counts[tp] >= limit {
			return true
		}
	}
	return false
}
