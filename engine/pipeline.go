package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/testhook"
)

const (
	// continuousWait is how long a continuous pipeline (interval 0) lets
	// the source block waiting for the first record of a batch.
	continuousWait = 100 * time.Millisecond
	// drainTimeout bounds how long a stopping pipeline spends finishing the
	// batch in flight before abandoning it (it is then recomputed on the
	// next start; nothing half-written becomes visible).
	drainTimeout = 30 * time.Second
)

// Config is everything a pipeline runs with. The pipeline owns Source,
// Transforms, Sink and State and closes them when Run returns, and Tasks
// too if it is an io.Closer.
type Config struct {
	Name     string
	Delivery Delivery
	// Interval between batch starts while the pipeline is caught up; while
	// it is behind, batches run back to back. 0 = continuous.
	Interval               time.Duration
	MaxRecordsPerPartition int
	// IdleExit makes Run return nil once no batch is in flight, everything
	// read is committed, reads have returned no records for at least this
	// long (counted from the first empty read) and a Backlogger source
	// reports a known backlog of 0; 0 = run until ctx ends.
	IdleExit time.Duration

	Source     Source
	Transforms []Transform
	Sink       Sink
	// Checkpoints keeps positions for at-least-once and at-most-once;
	// required for those modes, ignored for exactly-once.
	Checkpoints CheckpointStore
	// DeadLetters routes rejected records to the sink's DeadLetterSink; when
	// false they are counted, logged and dropped.
	DeadLetters bool

	// Stages are the pipelines that run after this one, in order, each
	// reading what the one before writes to an internal topic (a pipeline
	// cut at its repartition steps, ARCHITECTURE §20). Run runs them with
	// this one and stops them together; a stage's IdleExit counts only
	// once the stage before it has exited.
	Stages []*Pipeline

	// Tasks, when set, makes the pipeline run only the tasks it assigns
	// this process (docs/ARCHITECTURE.md §11): the sink must be a TaskSink,
	// the source a TaskSource, and delivery exactly-once.
	Tasks Assigner

	// State keeps the state of stateful steps under the epoch rule
	// (docs/ARCHITECTURE.md §18); nil = no step keeps state. Needs delivery
	// exactly-once.
	State StateBackend

	// MinBackoff is the wait before the first retry of a failed batch; it
	// doubles per consecutive failure up to 30s. 0 = 100ms.
	MinBackoff time.Duration

	Logger  *slog.Logger // nil = slog.Default()
	Metrics *Metrics     // nil = unregistered collectors
}

// Pipeline runs one pipeline's batch loop.
type Pipeline struct {
	cfg   Config
	log   *slog.Logger
	m     *Metrics
	proto *Protocol
	rate  rateController

	tick       time.Duration // the shortest Ticker interval of the transforms; 0 = none
	sourceOpen bool
	chains     *taskChains // the tasks being run, when split into tasks
	intake     *intake     // reads ahead while the source is open
	cur        *prepared   // the batch in flight
	spare      []Record    // a committed batch's input, for the next read (Recycler)
	idleSince  time.Time   // start of the first of the idle reads since the last record; zero = not idle
	lastAckErr string      // the last Committed error logged; used by whoever owns the source
	// gauged holds the tasks whose TaskCommittedEpoch series this
	// pipeline set and has not deleted. Owned by the batch loop.
	gauged map[Task]bool
	// upstream is closed when the stage before this one (Config.Stages)
	// exited idle; nil for the first stage. Set by Run before run starts.
	upstream <-chan struct{}

	statusMu sync.Mutex
	status   Status
}

// New checks cfg and returns a pipeline ready to Run.
func New(cfg Config) (*Pipeline, error) {
	switch {
	case cfg.Name == "":
		return nil, errors.New("engine: pipeline has no name")
	case cfg.Source == nil || cfg.Sink == nil:
		return nil, errors.New("engine: pipeline needs a source and a sink")
	case cfg.Delivery != ExactlyOnce && cfg.Delivery != AtLeastOnce && cfg.Delivery != AtMostOnce:
		return nil, fmt.Errorf("engine: delivery %q: use exactly-once, at-least-once or at-most-once", cfg.Delivery)
	case cfg.Delivery != ExactlyOnce && cfg.Checkpoints == nil:
		return nil, fmt.Errorf("engine: delivery %s needs a checkpoint store", cfg.Delivery)
	}
	if cfg.Tasks != nil {
		if _, ok := cfg.Sink.(TaskSink); !ok {
			return nil, fmt.Errorf("engine: sink %T keeps no checkpoint per task; it cannot run a pipeline split into tasks", cfg.Sink)
		}
		if _, ok := cfg.Source.(TaskSource); !ok {
			return nil, fmt.Errorf("engine: source %T cannot read a subset of tasks", cfg.Source)
		}
		if cfg.Delivery != ExactlyOnce {
			return nil, fmt.Errorf("engine: a pipeline split into tasks needs delivery exactly-once, not %s", cfg.Delivery)
		}
	}
	if cfg.State != nil && cfg.Delivery != ExactlyOnce {
		return nil, fmt.Errorf("engine: a pipeline that keeps state needs delivery exactly-once, not %s", cfg.Delivery)
	}
	if cfg.DeadLetters {
		if _, ok := cfg.Sink.(DeadLetterSink); !ok {
			return nil, fmt.Errorf("engine: sink %T cannot take dead letters", cfg.Sink)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	m := cfg.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	proto := NewProtocol(cfg.Delivery)
	if cfg.MinBackoff > 0 {
		proto.SetMinBackoff(cfg.MinBackoff)
	}
	// Split into tasks, a fenced commit means another process took a task
	// over: start again from the sink with the assignment as it is now.
	proto.fencedRetries = cfg.Tasks != nil
	var tick time.Duration
	for _, t := range cfg.Transforms {
		if tk, ok := t.(Ticker); ok && tk.Tick() > 0 && (tick == 0 || tk.Tick() < tick) {
			tick = tk.Tick()
		}
	}
	return &Pipeline{
		cfg:   cfg,
		log:   log.With("pipeline", cfg.Name),
		m:     m,
		proto: proto,
		rate:  rateController{interval: cfg.Interval},
		tick:  tick,
	}, nil
}

// Status is a snapshot of a running pipeline, safe to take from any
// goroutine.
type Status struct {
	Epoch     uint64    // last committed epoch (split into tasks: the round since the last open)
	Positions Positions // where the next batch starts
	// Tasks holds the checkpoint of each task this process runs, when the
	// pipeline is split into tasks (none once Run has returned); nil
	// otherwise.
	Tasks map[Task]Checkpoint
	// Ends holds where each partition the source reads ends, as of the
	// latest read, for a source that knows (Ender); nil otherwise.
	Ends       Positions
	LastCommit time.Time // zero before the first commit of this run
	Retrying   error     // the failure being retried, nil when healthy
}

// Status returns the pipeline's current status.
func (p *Pipeline) Status() Status {
	p.statusMu.Lock()
	defer p.statusMu.Unlock()
	s := p.status
	s.Positions = s.Positions.Clone()
	s.Tasks = maps.Clone(s.Tasks)
	s.Ends = s.Ends.Clone()
	return s
}

// setEnds records where the source's partitions end. The intake calls it.
func (p *Pipeline) setEnds(ends Positions) {
	p.statusMu.Lock()
	defer p.statusMu.Unlock()
	p.status.Ends = ends.Clone()
}

// Committed returns the last committed epoch and positions.
func (p *Pipeline) Committed() (uint64, Positions) {
	s := p.Status()
	return s.Epoch, s.Positions
}

// publish copies the protocol's committed state into the status snapshot
// and, split into tasks, into the tasks' epoch gauges.
func (p *Pipeline) publish(commit bool, retrying error) {
	epoch, at := p.proto.Committed()
	var tasks map[Task]Checkpoint
	if p.chains != nil {
		tasks = p.chains.checkpoints(epoch, at)
		p.gaugeTasks(tasks)
	}
	p.statusMu.Lock()
	defer p.statusMu.Unlock()
	p.status.Epoch, p.status.Positions, p.status.Retrying = epoch, at.Clone(), retrying
	p.status.Tasks = tasks
	if commit {
		p.status.LastCommit = time.Now()
	}
}

// gaugeEpoch sets the pipeline's epoch gauge. A pipeline split into tasks
// has no one epoch (the engine's is the round since the tasks were last
// opened, which means nothing across processes): it reports each task's in
// sluice_task_committed_epoch instead.
func (p *Pipeline) gaugeEpoch(epoch uint64) {
	if p.cfg.Tasks != nil {
		return
	}
	p.m.CommittedEpoch.WithLabelValues(p.cfg.Name).Set(float64(epoch))
}

// gaugeTasks sets the epoch gauge of every task in cps and deletes the
// series of the tasks this pipeline no longer runs (moved to another
// process, or the pipeline stopped: nil), so no process reports a task it
// does not hold.
func (p *Pipeline) gaugeTasks(cps map[Task]Checkpoint) {
	for t := range p.gauged {
		if _, ok := cps[t]; !ok {
			p.m.TaskCommittedEpoch.DeleteLabelValues(p.cfg.Name, t.String())
			delete(p.gauged, t)
		}
	}
	if p.gauged == nil && len(cps) > 0 {
		p.gauged = map[Task]bool{}
	}
	for t, cp := range cps {
		p.m.TaskCommittedEpoch.WithLabelValues(p.cfg.Name, t.String()).Set(float64(cp.Epoch))
		p.gauged[t] = true
	}
}

// run runs the batch loop until ctx ends (returns nil), the pipeline is idle
// for IdleExit (returns nil) or a fatal error stops the pipeline. When ctx
// ends, intake stops at once, the batch read ahead is discarded and the
// batch in flight is finished within drainTimeout or abandoned; either way
// nothing committed is lost and nothing half-written becomes visible.
//
// Stages overlap as in Spark Streaming, where the next job is queued while
// one runs: an intake goroutine reads and transforms batch e+1 while this
// loop writes, commits and acknowledges batch e. The Protocol still orders
// every step: batch e+1 enters it (ActRead) only after e is committed, so
// epochs commit strictly in order and each batch starts where the one
// before ended. Any failure, backoff or reopen stops the intake first and
// discards what it read ahead; the protocol then reopens the source at the
// sink's positions, so everything after the last commit is recomputed.
func (p *Pipeline) run(ctx context.Context) (err error) {
	// Steps of a batch in flight run on opCtx, which outlives ctx by up to
	// drainTimeout so a stop can still commit.
	opCtx, cancelOp := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelOp()
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(drainTimeout, cancelOp)
		context.AfterFunc(opCtx, func() { t.Stop() })
	})
	defer stopDrain()
	defer func() {
		p.stopIntake()
		err = errors.Join(err, p.close())
	}()

	for {
		proto := p.proto
		switch proto.Next() {
		case ActOpen, ActFillGap, ActOpenSource, ActAbort, ActBackoff, ActStop:
			// Starting over or stopping: nothing read ahead may outlive
			// the positions it was read from, nor may its state.
			p.stopIntake()
			if p.cfg.State != nil {
				p.cfg.State.Discard()
			}
		}
		switch proto.Next() {
		case ActOpen:
			if ctx.Err() != nil {
				return nil
			}
			p.closeSource()
			if p.cfg.Tasks != nil {
				if !p.openTasks(ctx, opCtx, proto) {
					return nil
				}
				continue
			}
			sinkEpoch, sinkAt, err := p.cfg.Sink.Open(opCtx, p.cfg.Name)
			if err == nil && p.cfg.State != nil {
				// Exactly-once (New checks): the sink's epoch is the chain's.
				err = p.cfg.State.Restore(opCtx, nil, func(Task) uint64 { return sinkEpoch })
			}
			if err != nil {
				proto.Failed(err)
				continue
			}
			var cpEpoch uint64
			var cpAt Positions
			if p.cfg.Delivery != ExactlyOnce {
				if cpEpoch, cpAt, err = p.cfg.Checkpoints.Load(opCtx); err != nil {
					proto.Failed(err)
					continue
				}
			}
			proto.Opened(sinkEpoch, sinkAt, cpEpoch, cpAt)
			p.publish(false, nil)
			epoch, at := proto.Committed()
			p.gaugeEpoch(epoch)
			p.log.Info("resuming", "epoch", epoch, "positions", at)

		case ActFillGap:
			b := proto.Batch()
			p.log.Warn("positions were saved but the batch never reached the sink; skipping it (at-most-once)",
				"epoch", b.Epoch)
			p.step(proto, p.cfg.Sink.Commit(opCtx, b.Epoch, b.Until))
			p.publish(true, nil)

		case ActOpenSource:
			_, at := proto.Committed()
			var err error
			if p.chains != nil {
				err = p.cfg.Source.(TaskSource).OpenTasks(opCtx, p.chains.tasks, at)
			} else {
				err = p.cfg.Source.Open(opCtx, at)
			}
			p.sourceOpen = err == nil
			// The ends of what the source reads now (the intake, not
			// started yet, updates them after every read).
			var ends Positions
			if e, ok := p.cfg.Source.(Ender); ok && err == nil {
				ends = e.Ends()
			}
			p.setEnds(ends)
			// Idleness counts afresh: after a retry the records of the
			// failed batch are read again.
			p.idleSince = time.Time{}
			if err == nil {
				p.intake = p.startIntake(ctx, opCtx)
			}
			p.step(proto, err)

		case ActRead:
			if ctx.Err() != nil {
				return nil
			}
			if !p.intake.requested {
				p.requestRead(nil)
			}
			b, ok, reassigned := p.intake.take(ctx, p.changed())
			if reassigned {
				// Between batches: nothing is in flight. Start again
				// from the sink with the new assignment.
				proto.Reopen()
				continue
			}
			if !ok || ctx.Err() != nil {
				return nil // stopping: what was read ahead is discarded
			}
			if b.readErr != nil {
				proto.Failed(b.readErr)
				continue
			}
			proto.Read(b.work(), b.until)
			started := proto.Next() != ActRead
			if !started && b.state != nil {
				b.state.Committed() // changed nothing: nothing to keep
			}
			if started {
				b.handed = time.Now()
				p.cur = b
			}
			if idle := p.idle(b); idle && !started {
				p.log.Info("idle, exiting", "idle_exit", p.cfg.IdleExit)
				return nil
			}
			p.requestRead(b)

		case ActSavePositions:
			b := proto.Batch()
			p.step(proto, p.cfg.Checkpoints.Save(opCtx, b.Epoch, b.Until))

		case ActProcess:
			// The intake ran the transforms when it read the batch; a
			// failure is reported here, where the protocol expects it.
			p.step(proto, p.cur.procErr)

		case ActWrite:
			p.step(proto, p.write(opCtx, proto.Batch().Epoch))

		case ActCommit:
			b := proto.Batch()
			if testhook.BeforeCommit != nil {
				testhook.BeforeCommit()
			}
			start := time.Now()
			var cps map[Task]Checkpoint
			if p.chains != nil {
				cps = p.chains.checkpoints(b.Epoch, b.Until)
			}
			var err error
			if st := p.cur.state; st != nil {
				// The state of the batch is durable before the sink
				// commits it.
				err = st.Prepare(opCtx, func(t Task) uint64 {
					if cps != nil {
						return cps[t].Epoch
					}
					return b.Epoch
				})
			}
			if err == nil && cps != nil {
				err = p.cfg.Sink.(TaskSink).CommitTasks(opCtx, b.Epoch, cps)
			} else if err == nil {
				err = p.cfg.Sink.Commit(opCtx, b.Epoch, b.Until)
			}
			if err == nil && p.cur.state != nil {
				p.cur.state.Committed()
			}
			if err == nil {
				p.m.CommitDuration.WithLabelValues(p.cfg.Name).Observe(time.Since(start).Seconds())
				p.committed(b)
			}
			p.step(proto, err)
			if err == nil {
				p.publish(true, nil)
			}

		case ActAcknowledge:
			// Source.Committed must not run concurrently with a Next the
			// intake may be in: the intake passes it on before its next
			// Next. Its failure is not a batch failure (the sink holds the
			// positions), so the protocol hears Done either way.
			p.intake.acknowledge(proto.Batch().Until)
			if p.cur != nil {
				p.spare = p.cur.input
			}
			p.cur = nil
			proto.Done()

		case ActAbort:
			b := proto.Batch()
			p.step(proto, p.cfg.Sink.Abort(opCtx, b.Epoch))

		case ActBackoff:
			d := proto.Backoff()
			p.m.Retries.WithLabelValues(p.cfg.Name).Inc()
			p.log.Warn("batch failed, retrying from the last commit",
				"err", proto.Err(), "attempt", proto.Attempt(), "retry_in", d)
			p.cur = nil
			p.publish(false, proto.Err())
			if !sleep(ctx, d) {
				return nil
			}
			proto.Done()

		case ActStop:
			return fmt.Errorf("pipeline %s stopped: %w", p.cfg.Name, proto.Err())
		}
	}
}

// openTasks is ActOpen for a pipeline split into tasks: it waits for the
// assignment, then asks the sink for each task's checkpoint. It returns
// false if ctx ended while waiting.
func (p *Pipeline) openTasks(ctx, opCtx context.Context, proto *Protocol) bool {
	tasks, err := p.cfg.Tasks.Assigned(ctx)
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		proto.Failed(err)
		return true
	}
	if tasks == nil {
		// No task here (yet): not the nil that tells a state backend
		// the pipeline is one epoch chain of every task.
		tasks = []Task{}
	}
	cps, err := p.cfg.Sink.(TaskSink).OpenTasks(opCtx, p.cfg.Name, tasks)
	if err == nil {
		p.chains = newTaskChains(tasks, cps)
		err = p.chains.check()
	}
	if err == nil && p.cfg.State != nil {
		chains := p.chains
		err = p.cfg.State.Restore(opCtx, tasks, func(t Task) uint64 { return chains.base[t].Epoch })
	}
	if err != nil {
		p.chains = nil
		proto.Failed(err)
		return true
	}
	proto.Opened(0, p.chains.at(), 0, nil)
	p.publish(false, nil)
	p.log.Info("running tasks", "tasks", tasks, "positions", p.chains.at())
	return true
}

// changed is closed when the assignment of a pipeline split into tasks
// changed; nil (never ready) otherwise.
func (p *Pipeline) changed() <-chan struct{} {
	if p.cfg.Tasks == nil {
		return nil
	}
	return p.cfg.Tasks.Changed()
}

// step reports the outcome of a plain action to the protocol.
func (p *Pipeline) step(proto *Protocol, err error) {
	if err != nil {
		proto.Failed(err)
		return
	}
	proto.Done()
}

// requestRead asks the intake for the next batch, after last (nil: the
// first read since the source opened). While behind, the read starts at
// once, overlapping last's write and commit; caught up, it starts an
// interval after last started, the pipeline's cadence.
func (p *Pipeline) requestRead(last *prepared) {
	r := readRequest{limits: Limits{
		MaxRecordsPerPartition: p.cfg.MaxRecordsPerPartition,
		MaxRecords:             p.rate.limit,
	}, recycle: p.spare}
	p.spare = nil
	if p.cfg.Interval > 0 {
		if last != nil && !last.behind {
			r.notBefore = last.start.Add(p.cfg.Interval)
		}
	} else {
		r.limits.Wait = continuousWait
	}
	if p.cfg.IdleExit > 0 {
		// Polls come at least every IdleExit, so idleness is noticed.
		r.limits.Wait = min(r.limits.Wait, p.cfg.IdleExit)
	}
	p.intake.request(r)
}

// idle updates the idle clock with read b and reports whether the pipeline
// may exit, provided b started no batch: reads have been idle (no records, and a
// Backlogger's backlog known to be 0) continuously from idleSince until a
// read that started at least IdleExit later. The clock starts at the first
// idle read, not when the last records came, so a slow write or commit
// cannot end a run that still has records to read. When b started no
// batch, everything read before it is committed (no batch in flight).
func (p *Pipeline) idle(b *prepared) bool {
	if !b.idle {
		p.idleSince = time.Time{}
		return false
	}
	if !p.upstreamEnded() {
		// Records may still come from the stage before (Config.Stages).
		p.idleSince = time.Time{}
		return false
	}
	if p.idleSince.IsZero() {
		p.idleSince = b.start
	}
	return p.cfg.IdleExit > 0 && b.start.Sub(p.idleSince) >= p.cfg.IdleExit
}

// process runs recs through the transform chain. The intake calls it.
func (p *Pipeline) process(ctx context.Context, recs []Record) ([]Record, []Rejected, error) {
	var rejected []Rejected
	for i, t := range p.cfg.Transforms {
		if _, ok := t.(Ticker); !ok && len(recs) == 0 {
			continue // a tick: only the Tickers run on no input
		}
		out, rej, err := t.Process(ctx, recs)
		if err != nil {
			return nil, nil, fmt.Errorf("transform %d: %w", i+1, err)
		}
		for j := range rej {
			if rej[j].Plugin == "" {
				rej[j].Plugin = fmt.Sprintf("transform-%d", i+1)
			}
		}
		rejected = append(rejected, rej...)
		recs = out
	}
	return recs, rejected, nil
}

func (p *Pipeline) write(ctx context.Context, epoch uint64) error {
	b := p.cur
	if err := p.cfg.Sink.Write(ctx, epoch, b.records); err != nil {
		return err
	}
	if len(b.rejected) > 0 && p.cfg.DeadLetters {
		return p.cfg.Sink.(DeadLetterSink).WriteRejected(ctx, epoch, b.rejected)
	}
	return nil
}

func (p *Pipeline) committed(b Batch) {
	name := p.cfg.Name
	cur := p.cur
	p.m.RecordsIn.WithLabelValues(name).Add(float64(cur.in))
	p.m.RecordsOut.WithLabelValues(name).Add(float64(len(cur.records)))
	for _, r := range cur.rejected {
		p.m.RecordsRejected.WithLabelValues(name, r.Plugin).Inc()
	}
	if len(cur.rejected) > 0 && !p.cfg.DeadLetters {
		p.log.Warn("records rejected and dropped: the pipeline has no dead-letter destination",
			"epoch", b.Epoch, "count", len(cur.rejected), "first_reason", cur.rejected[0].Reason)
	}
	took := time.Since(cur.start)
	p.m.BatchDuration.WithLabelValues(name).Observe(took.Seconds())
	p.gaugeEpoch(b.Epoch)
	// The rate controller sees the work the batch cost, not the time it
	// waited, read ahead, for the batch before it to commit.
	p.rate.observe(cur.in, cur.took+time.Since(cur.handed))
	p.log.Debug("committed", "epoch", b.Epoch, "records", len(cur.records), "took", took)
}

// acknowledge tells the source until is committed. Called by the intake, or
// by the loop once the intake has stopped: never concurrently with Next.
func (p *Pipeline) acknowledge(ctx context.Context, until Positions) {
	err := p.cfg.Source.Committed(ctx, until)
	if err != nil && err.Error() != p.lastAckErr {
		// Not a batch failure (the sink holds the positions), but lag
		// tools go stale: say so once per distinct error.
		p.log.Warn("source could not record the committed positions", "err", err)
	}
	p.lastAckErr = ""
	if err != nil {
		p.lastAckErr = err.Error()
	}
}

// stopIntake stops reading ahead, discarding what was read, and passes on
// any pending acknowledgement; afterwards the loop may use the source.
func (p *Pipeline) stopIntake() {
	if p.intake != nil {
		p.intake.stop()
		p.intake = nil
	}
}

func (p *Pipeline) closeSource() {
	if p.sourceOpen {
		if err := p.cfg.Source.Close(); err != nil {
			p.log.Warn("closing source", "err", err)
		}
		p.sourceOpen = false
	}
}

func (p *Pipeline) close() error {
	var errs []error
	if p.sourceOpen {
		errs = append(errs, p.cfg.Source.Close())
		p.sourceOpen = false
	}
	// Stopped, the process runs no task: the group gives them to others.
	p.gaugeTasks(nil)
	p.statusMu.Lock()
	if p.status.Tasks != nil {
		p.status.Tasks = map[Task]Checkpoint{}
	}
	p.status.Ends = nil
	p.statusMu.Unlock()
	if c, ok := p.cfg.Tasks.(io.Closer); ok {
		// After the source: leaving the group hands the tasks over.
		errs = append(errs, c.Close())
	}
	for _, t := range p.cfg.Transforms {
		errs = append(errs, t.Close())
	}
	errs = append(errs, p.cfg.Sink.Close())
	if p.cfg.State != nil {
		p.cfg.State.Discard()
		errs = append(errs, p.cfg.State.Close())
	}
	return errors.Join(errs...)
}

// sleep waits d or until ctx ends; it reports whether the full wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
