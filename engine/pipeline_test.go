package engine_test

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

var quiet = slog.New(slog.DiscardHandler)

// upper is an in-process transform: it uppercases values and rejects
// values that start with "2:".
type upper struct{}

func (upper) Process(_ context.Context, in []engine.Record) ([]engine.Record, []engine.Rejected, error) {
	out := make([]engine.Record, 0, len(in))
	var rej []engine.Rejected
	for _, r := range in {
		if r.Partition == 2 {
			rej = append(rej, engine.Rejected{Record: r, Reason: "partition 2 is not wanted"})
			continue
		}
		r.Value = append([]byte("v"), r.Value...)
		out = append(out, r)
	}
	return out, rej, nil
}
func (upper) Close() error { return nil }

// dlSink is memSink with dead letters committed in the same epoch.
type dlSink struct {
	memSink
	staged map[uint64][]engine.Rejected
	dead   *[]engine.Rejected
}

func (s *dlSink) WriteRejected(_ context.Context, epoch uint64, rej []engine.Rejected) error {
	if s.staged == nil {
		s.staged = map[uint64][]engine.Rejected{}
	}
	s.staged[epoch] = append(s.staged[epoch], rej...)
	return nil
}

func (s *dlSink) Commit(ctx context.Context, epoch uint64, until engine.Positions) error {
	if err := s.memSink.Commit(ctx, epoch, until); err != nil {
		return err
	}
	*s.dead = append(*s.dead, s.staged[epoch]...)
	delete(s.staged, epoch)
	return nil
}

func TestTransformsAndDeadLetters(t *testing.T) {
	for _, interval := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run(interval.String(), func(t *testing.T) {
			dur := &durable{}
			var dead []engine.Rejected
			p, err := engine.New(engine.Config{
				Name: "t", Delivery: engine.ExactlyOnce, Interval: interval,
				MaxRecordsPerPartition: 50, IdleExit: 30 * time.Millisecond, Logger: quiet,
				Source: &seqSource{}, Transforms: []engine.Transform{upper{}},
				Sink: &dlSink{memSink: memSink{d: dur}, dead: &dead}, DeadLetters: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(dur.visible) != 2*seqPerPart || len(dead) != seqPerPart {
				t.Fatalf("%d out, %d dead letters; want %d and %d", len(dur.visible), len(dead), 2*seqPerPart, seqPerPart)
			}
			if string(dur.visible[0]) != "v0:0" {
				t.Fatalf("transform not applied: %q", dur.visible[0])
			}
			if dead[0].Plugin != "transform-1" || dead[0].Reason == "" {
				t.Fatalf("dead letter lacks plugin or reason: %+v", dead[0])
			}
			epoch, at := p.Committed()
			if epoch != seqPerPart/50 || at[engine.TopicPartition{Topic: seqTopic, Partition: 2}] != seqPerPart {
				t.Fatalf("committed %d %v", epoch, at)
			}
		})
	}
}

func TestDeadLettersNeedACapableSink(t *testing.T) {
	_, err := engine.New(engine.Config{Name: "t", Delivery: engine.ExactlyOnce,
		Source: &seqSource{}, Sink: &memSink{d: &durable{}}, DeadLetters: true})
	if err == nil {
		t.Fatal("a sink without WriteRejected cannot take dead letters")
	}
}

// gateSink blocks Commit until released, to stop a pipeline mid-batch.
type gateSink struct {
	memSink
	inCommit chan struct{}
	release  chan struct{}
	once     sync.Once
}

func (s *gateSink) Commit(ctx context.Context, epoch uint64, until engine.Positions) error {
	s.once.Do(func() {
		close(s.inCommit)
		<-s.release
	})
	return s.memSink.Commit(ctx, epoch, until)
}

func TestStopFinishesTheBatchInFlight(t *testing.T) {
	dur := &durable{}
	sink := &gateSink{memSink: memSink{d: dur}, inCommit: make(chan struct{}), release: make(chan struct{})}
	p, _ := engine.New(engine.Config{Name: "t", Delivery: engine.ExactlyOnce,
		MaxRecordsPerPartition: 10, Logger: quiet, Source: &seqSource{}, Sink: sink})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	<-sink.inCommit
	cancel() // stop while the first commit is in progress
	close(sink.release)
	if err := <-done; err != nil {
		t.Fatalf("a stop must return nil, got %v", err)
	}
	if epoch, _ := p.Committed(); epoch != 1 || len(dur.visible) != 30 {
		t.Fatalf("the batch in flight was not finished: epoch %d, %d records visible", epoch, len(dur.visible))
	}
}

// flakySink is unreachable for its first few calls.
type flakySink struct {
	memSink
	failures int
}

func (s *flakySink) Open(ctx context.Context, name string) (uint64, engine.Positions, error) {
	if s.failures > 0 {
		s.failures--
		return 0, nil, engine.Retryable(errors.New("dial tcp 127.0.0.1:5432: connection refused"))
	}
	return s.memSink.Open(ctx, name)
}

func TestTransientFailuresAreRetried(t *testing.T) {
	dur := &durable{}
	m := engine.NewMetrics(nil)
	p, _ := engine.New(engine.Config{Name: "t", Delivery: engine.ExactlyOnce, MinBackoff: time.Millisecond,
		IdleExit: 20 * time.Millisecond, Logger: quiet, Metrics: m,
		Source: &seqSource{}, Sink: &flakySink{memSink: memSink{d: dur}, failures: 4}})
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(dur.visible) != seqPartitions*seqPerPart {
		t.Fatalf("%d records visible after retries", len(dur.visible))
	}
}

func TestFatalFailureStopsWithTheReason(t *testing.T) {
	f := &faults{points: []point{beforeCommit}, prob: 1, rng: rand.New(rand.NewPCG(1, 1))}
	p, _ := engine.New(engine.Config{Name: "t", Delivery: engine.ExactlyOnce, Logger: quiet,
		Source: &seqSource{}, Sink: faultySink{Sink: &memSink{d: &durable{}}, f: f}})
	err := p.Run(context.Background())
	if !errors.Is(err, errCrash) || f.injected[beforeCommit] != 1 {
		t.Fatalf("Run = %v after %d faults; want it to stop on the first, with the sink's error", err, f.injected[beforeCommit])
	}
}
