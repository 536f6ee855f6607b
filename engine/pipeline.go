package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
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
// Transforms and Sink and closes them when Run returns.
type Config struct {
	Name     string
	Delivery Delivery
	// Interval between batch starts; 0 = continuous.
	Interval               time.Duration
	MaxRecordsPerPartition int
	// IdleExit makes Run return nil once the source has had no new records
	// for this long and everything read is committed; 0 = run until ctx ends.
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

	sourceOpen bool
	records    []Record
	rejected   []Rejected
	recordsIn  int    // source records in the batch in flight
	lastAckErr string // the last Committed error logged

	statusMu   sync.Mutex
	status     Status
	readStart  time.Time
	lastRecord time.Time
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
	return &Pipeline{
		cfg:   cfg,
		log:   log.With("pipeline", cfg.Name),
		m:     m,
		proto: proto,
		rate:  rateController{interval: cfg.Interval},
	}, nil
}

// Status is a snapshot of a running pipeline, safe to take from any
// goroutine.
type Status struct {
	Epoch      uint64    // last committed epoch
	Positions  Positions // where the next batch starts
	LastCommit time.Time // zero before the first commit of this run
	Retrying   error     // the failure being retried, nil when healthy
}

// Status returns the pipeline's current status.
func (p *Pipeline) Status() Status {
	p.statusMu.Lock()
	defer p.statusMu.Unlock()
	s := p.status
	s.Positions = s.Positions.Clone()
	return s
}

// Committed returns the last committed epoch and positions.
func (p *Pipeline) Committed() (uint64, Positions) {
	s := p.Status()
	return s.Epoch, s.Positions
}

// publish copies the protocol's committed state into the status snapshot.
func (p *Pipeline) publish(commit bool, retrying error) {
	epoch, at := p.proto.Committed()
	p.statusMu.Lock()
	defer p.statusMu.Unlock()
	p.status.Epoch, p.status.Positions, p.status.Retrying = epoch, at.Clone(), retrying
	if commit {
		p.status.LastCommit = time.Now()
	}
}

// Run runs the batch loop until ctx ends (returns nil), IdleExit elapses
// (returns nil) or a fatal error stops the pipeline. When ctx ends, intake
// stops at once and the batch in flight is finished within drainTimeout or
// abandoned; either way nothing committed is lost and nothing half-written
// becomes visible.
func (p *Pipeline) Run(ctx context.Context) (err error) {
	// Steps of a batch in flight run on opCtx, which outlives ctx by up to
	// drainTimeout so a stop can still commit.
	opCtx, cancelOp := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelOp()
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(drainTimeout, cancelOp)
		context.AfterFunc(opCtx, func() { t.Stop() })
	})
	defer stopDrain()
	defer func() { err = errors.Join(err, p.close()) }()

	var nextStart time.Time
	for {
		proto := p.proto
		switch proto.Next() {
		case ActOpen:
			if ctx.Err() != nil {
				return nil
			}
			p.closeSource()
			sinkEpoch, sinkAt, err := p.cfg.Sink.Open(opCtx, p.cfg.Name)
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
			p.m.CommittedEpoch.WithLabelValues(p.cfg.Name).Set(float64(epoch))
			p.log.Info("resuming", "epoch", epoch, "positions", at.String())

		case ActFillGap:
			b := proto.Batch()
			p.log.Warn("positions were saved but the batch never reached the sink; skipping it (at-most-once)",
				"epoch", b.Epoch)
			p.step(proto, p.cfg.Sink.Commit(opCtx, b.Epoch, b.Until))
			p.publish(true, nil)

		case ActOpenSource:
			_, at := proto.Committed()
			err := p.cfg.Source.Open(opCtx, at)
			p.sourceOpen = err == nil
			// Idleness counts from here: after a retry the records of the
			// failed batch are read again and are not yet committed.
			p.lastRecord = time.Now()
			p.step(proto, err)

		case ActRead:
			if ctx.Err() != nil {
				return nil
			}
			if p.cfg.IdleExit > 0 && time.Since(p.lastRecord) >= p.cfg.IdleExit {
				p.log.Info("idle, exiting", "idle-exit", p.cfg.IdleExit)
				return nil
			}
			wait := continuousWait
			if p.cfg.Interval > 0 {
				if d := time.Until(nextStart); d > 0 && !sleep(ctx, d) {
					return nil
				}
				nextStart = time.Now().Add(p.cfg.Interval)
				wait = 0
			}
			if p.cfg.IdleExit > 0 {
				wait = min(wait, p.cfg.IdleExit)
			}
			p.readStart = time.Now()
			recs, until, err := p.cfg.Source.Next(ctx, Limits{
				MaxRecordsPerPartition: p.cfg.MaxRecordsPerPartition,
				MaxRecords:             p.rate.limit,
				Wait:                   wait,
			})
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				proto.Failed(err)
				continue
			}
			if len(recs) > 0 {
				p.lastRecord = time.Now()
			}
			p.records, p.rejected, p.recordsIn = recs, nil, len(recs)
			proto.Read(len(recs), until)

		case ActSavePositions:
			b := proto.Batch()
			p.step(proto, p.cfg.Checkpoints.Save(opCtx, b.Epoch, b.Until))

		case ActProcess:
			p.step(proto, p.process(opCtx))

		case ActWrite:
			p.step(proto, p.write(opCtx, proto.Batch().Epoch))

		case ActCommit:
			b := proto.Batch()
			start := time.Now()
			err := p.cfg.Sink.Commit(opCtx, b.Epoch, b.Until)
			if err == nil {
				p.m.CommitDuration.WithLabelValues(p.cfg.Name).Observe(time.Since(start).Seconds())
				p.committed(b)
			}
			p.step(proto, err)
			if err == nil {
				p.publish(true, nil)
			}

		case ActAcknowledge:
			err := p.cfg.Source.Committed(opCtx, proto.Batch().Until)
			if err != nil && err.Error() != p.lastAckErr {
				// Not a batch failure (the sink holds the positions), but
				// lag tools go stale: say so once per distinct error.
				p.log.Warn("source could not record the committed positions", "err", err)
			}
			p.lastAckErr = ""
			if err != nil {
				p.lastAckErr = err.Error()
			}
			p.step(proto, err)

		case ActAbort:
			b := proto.Batch()
			p.step(proto, p.cfg.Sink.Abort(opCtx, b.Epoch))

		case ActBackoff:
			d := proto.Backoff()
			p.m.Retries.WithLabelValues(p.cfg.Name).Inc()
			p.log.Warn("batch failed, retrying from the last commit",
				"err", proto.Err(), "attempt", proto.Attempt(), "backoff", d)
			p.records, p.rejected = nil, nil
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

// step reports the outcome of a plain action to the protocol.
func (p *Pipeline) step(proto *Protocol, err error) {
	if err != nil {
		proto.Failed(err)
		return
	}
	proto.Done()
}

func (p *Pipeline) process(ctx context.Context) error {
	recs := p.records
	for i, t := range p.cfg.Transforms {
		out, rej, err := t.Process(ctx, recs)
		if err != nil {
			return fmt.Errorf("transform %d: %w", i+1, err)
		}
		for j := range rej {
			if rej[j].Plugin == "" {
				rej[j].Plugin = fmt.Sprintf("transform-%d", i+1)
			}
		}
		p.rejected = append(p.rejected, rej...)
		recs = out
	}
	p.records = recs
	return nil
}

func (p *Pipeline) write(ctx context.Context, epoch uint64) error {
	if err := p.cfg.Sink.Write(ctx, epoch, p.records); err != nil {
		return err
	}
	if len(p.rejected) > 0 && p.cfg.DeadLetters {
		return p.cfg.Sink.(DeadLetterSink).WriteRejected(ctx, epoch, p.rejected)
	}
	return nil
}

func (p *Pipeline) committed(b Batch) {
	name := p.cfg.Name
	p.m.RecordsIn.WithLabelValues(name).Add(float64(p.recordsIn))
	p.m.RecordsOut.WithLabelValues(name).Add(float64(len(p.records)))
	for _, r := range p.rejected {
		p.m.RecordsRejected.WithLabelValues(name, r.Plugin).Inc()
	}
	if len(p.rejected) > 0 && !p.cfg.DeadLetters {
		p.log.Warn("records rejected and dropped: the pipeline has no dead-letter destination",
			"epoch", b.Epoch, "count", len(p.rejected), "first-reason", p.rejected[0].Reason)
	}
	took := time.Since(p.readStart)
	p.m.BatchDuration.WithLabelValues(name).Observe(took.Seconds())
	p.m.CommittedEpoch.WithLabelValues(name).Set(float64(b.Epoch))
	p.rate.observe(p.recordsIn, took)
	p.log.Debug("committed", "epoch", b.Epoch, "records", len(p.records), "took", took)
	p.records, p.rejected = nil, nil
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
	for _, t := range p.cfg.Transforms {
		errs = append(errs, t.Close())
	}
	errs = append(errs, p.cfg.Sink.Close())
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
