package engine_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sources/generate"
)

// --idle-exit D (Config.IdleExit) ends a run only when nothing is in
// flight, everything read is committed, reads have returned nothing for D
// and a Backlogger knows its backlog is 0 (issue 18.1).

// A sink whose every commit takes 3×D must not end the run early: the idle
// clock starts at the first empty read, not when the last records came.
func TestIdleExitWaitsForSlowCommits(t *testing.T) {
	const idle = 20 * time.Millisecond
	const slowCommit = 3 * idle
	sources := map[string]func(t *testing.T) (engine.Source, int){
		"fake": func(t *testing.T) (engine.Source, int) {
			s := newFakeSource(t, 3, 95)
			return s, s.total()
		},
		"backlogger": func(t *testing.T) (engine.Source, int) {
			s := newFakeSource(t, 3, 95)
			return backlogSource{s}, s.total()
		},
		"generate": func(t *testing.T) (engine.Source, int) {
			g, err := generate.New(generate.Config{Topic: fakeTopic, Count: 285, Partitions: 3})
			if err != nil {
				t.Fatal(err)
			}
			return g, 285
		},
	}
	for name, newSource := range sources {
		for _, interval := range []time.Duration{0, 5 * time.Millisecond} {
			t.Run(fmt.Sprintf("%s/interval=%v", name, interval), func(t *testing.T) {
				src, total := newSource(t)
				sink := newOrderSink(t)
				sink.beforeCommit = func(context.Context, uint64) { time.Sleep(slowCommit) } // the slow sink itself
				p, _ := engine.New(engine.Config{Name: "slow", Delivery: engine.ExactlyOnce, Interval: interval,
					MaxRecordsPerPartition: 20, IdleExit: idle, Logger: quiet, Source: src, Sink: sink})
				if err := runFor(t, context.Background(), p); err != nil {
					t.Fatal(err)
				}
				if epoch, _ := p.Committed(); len(sink.visible) != total || epoch < 5 {
					t.Fatalf("Run returned nil with %d of %d records committed in %d epochs", len(sink.visible), total, epoch)
				}
			})
		}
	}
}

// joinSource is a Backlogger that, for its first joinAfter reads, returns
// nothing and reports its backlog as unknown (a consumer group that has not
// assigned partitions yet) or as known but not yet fetched.
type joinSource struct {
	*fakeSource
	joinAfter  int64
	knownEarly bool

	mu    sync.Mutex
	reads int64
}

func (s *joinSource) Next(ctx context.Context, l engine.Limits) ([]engine.Record, engine.Positions, error) {
	s.mu.Lock()
	s.reads++
	joined := s.reads > s.joinAfter
	s.mu.Unlock()
	if joined {
		return s.fakeSource.Next(ctx, l)
	}
	defer s.enter("Next")()
	t := time.NewTimer(l.Wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-t.C:
	}
	return nil, nil, nil
}

func (s *joinSource) Backlog() (int64, bool) {
	defer s.enter("Backlog")()
	s.mu.Lock()
	joined := s.reads > s.joinAfter
	s.mu.Unlock()
	if !joined && !s.knownEarly {
		return 0, false
	}
	return s.left(), true
}

// Empty reads do not count as idle while a Backlogger cannot say its
// backlog is 0: a run must outlast a slow group join, however long.
func TestIdleExitWaitsForAKnownBacklog(t *testing.T) {
	const idle = 10 * time.Millisecond
	for _, knownEarly := range []bool{false, true} {
		t.Run(fmt.Sprintf("known=%v", knownEarly), func(t *testing.T) {
			// Twenty empty reads of at least idle each: the old clock would
			// have ended the run after the first.
			src := &joinSource{fakeSource: newFakeSource(t, 2, 50), joinAfter: 20, knownEarly: knownEarly}
			sink := newOrderSink(t)
			p, _ := engine.New(engine.Config{Name: "join", Delivery: engine.ExactlyOnce,
				MaxRecordsPerPartition: 20, IdleExit: idle, Logger: quiet, Source: src, Sink: sink})
			if err := runFor(t, context.Background(), p); err != nil {
				t.Fatal(err)
			}
			if src.reads <= src.joinAfter {
				t.Fatalf("Run returned after %d reads, before the source joined (%d)", src.reads, src.joinAfter)
			}
			sink.checkExactlyOnce(t, src.fakeSource)
		})
	}
}

// A caught-up pipeline exits after D of empty reads plus at most one poll:
// counted in reads, not measured in time, the reads after the last records
// number at most ceil(D/poll)+1, and they span at least D.
func TestIdleExitWhenCaughtUp(t *testing.T) {
	const idle = 50 * time.Millisecond
	const continuousWait = 100 * time.Millisecond // engine.continuousWait
	for _, backlog := range []bool{false, true} {
		for _, interval := range []time.Duration{0, 10 * time.Millisecond, 200 * time.Millisecond} {
			t.Run(fmt.Sprintf("backlogger=%v/interval=%v", backlog, interval), func(t *testing.T) {
				src := newFakeSource(t, 3, 10)
				var source engine.Source = src
				if backlog {
					source = backlogSource{src}
				}
				sink := newOrderSink(t)
				p, _ := engine.New(engine.Config{Name: "caught-up", Delivery: engine.ExactlyOnce, Interval: interval,
					MaxRecordsPerPartition: 4, IdleExit: idle, Logger: quiet, Source: source, Sink: sink})
				if err := runFor(t, context.Background(), p); err != nil {
					t.Fatal(err)
				}
				returned := time.Now()
				sink.checkExactlyOnce(t, src)
				poll := interval
				if poll == 0 {
					poll = min(continuousWait, idle)
				}
				maxReads := int((idle+poll-1)/poll) + 1
				src.mu.Lock()
				defer src.mu.Unlock()
				if src.emptyReads < 1 || src.emptyReads > maxReads {
					t.Errorf("%d empty reads before exiting; want 1 to %d (idle %v, poll %v)", src.emptyReads, maxReads, idle, poll)
				}
				// The engine's clock starts just before the fake's, and ends
				// just before Run returns; clockSlack covers the difference.
				const clockSlack = time.Millisecond
				if spanned := returned.Sub(src.firstEmpty); spanned < idle-clockSlack {
					t.Errorf("exited %v after the first empty read; --idle-exit %v must mean at least that", spanned, idle)
				}
			})
		}
	}
}
