package engine

import (
	"context"
	"errors"
	"sync"
)

// Run runs the pipeline, and the stages after it (Config.Stages) beside
// it, until ctx ends (returns nil), every stage is idle for IdleExit
// (returns nil) or a fatal error stops one of them, which stops the
// others. See run for what one stage does. When ctx ends, intake stops at
// once, the batch read ahead is discarded and the batch in flight is
// finished within drainTimeout or abandoned; either way nothing committed
// is lost and nothing half-written becomes visible.
func (p *Pipeline) Run(ctx context.Context) error {
	if len(p.cfg.Stages) == 0 {
		return p.run(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	all := append([]*Pipeline{p}, p.cfg.Stages...)
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	var before chan struct{}
	for i, s := range all {
		s.upstream = before
		ended := make(chan struct{})
		wg.Go(func() {
			errs[i] = s.run(ctx)
			if errs[i] != nil || ctx.Err() != nil {
				// A stage that fails stops the others: the pipeline is
				// one unit to whoever runs it.
				cancel()
				return
			}
			close(ended) // exited idle: the next stage may too
		})
		before = ended
	}
	wg.Wait()
	return errors.Join(errs...)
}

// upstreamEnded reports whether no stage before this one can still write
// records for it to read.
func (p *Pipeline) upstreamEnded() bool {
	if p.upstream == nil {
		return true
	}
	select {
	case <-p.upstream:
		return true
	default:
		return false
	}
}

// Name returns the pipeline's name (a stage's: PIPELINE.repartition-N).
func (p *Pipeline) Name() string { return p.cfg.Name }

// Stages returns the stages that run after this one (Config.Stages).
func (p *Pipeline) Stages() []*Pipeline { return p.cfg.Stages }

// Close closes the components of a pipeline that will never Run (a stage
// built before another failed to build); Run closes its own. It does not
// close the stages in Config.Stages.
func (p *Pipeline) Close() error {
	errs := []error{p.cfg.Source.Close()}
	return errors.Join(append(errs, p.close())...)
}
