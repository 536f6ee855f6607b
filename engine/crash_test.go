package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// The crash-injection harness (in the spirit of Flink's): a sequence source,
// a sink whose durable state outlives every "process", and fault points
// before Write, between Write and Commit, after Commit but before the engine
// hears back, and around the checkpoint store. A crash stops the pipeline
// with a non-retryable error; the test then starts a new pipeline on the
// same durable state, as a restarted process would.

const (
	seqTopic      = "seq"
	seqPartitions = 3
	seqPerPart    = 400
)

// seqSource serves partition p's records 0..seqPerPart-1, value "p:i".
type seqSource struct {
	next [seqPartitions]int64
}

func (s *seqSource) Open(_ context.Context, from engine.Positions) error {
	s.next = [seqPartitions]int64{}
	for tp, off := range from {
		s.next[tp.Partition] = off
	}
	return nil
}

func (s *seqSource) Next(ctx context.Context, l engine.Limits) ([]engine.Record, engine.Positions, error) {
	var recs []engine.Record
	for p := range int32(seqPartitions) {
		for n := 0; s.next[p] < seqPerPart && (l.MaxRecordsPerPartition == 0 || n < l.MaxRecordsPerPartition); n++ {
			recs = append(recs, engine.Record{Topic: seqTopic, Partition: p, Offset: s.next[p],
				Value: []byte(fmt.Sprintf("%d:%d", p, s.next[p]))})
			s.next[p]++
		}
	}
	pos := engine.Positions{}
	for p := range int32(seqPartitions) {
		pos[engine.TopicPartition{Topic: seqTopic, Partition: p}] = s.next[p]
	}
	if len(recs) == 0 && l.Wait > 0 {
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(l.Wait):
		}
	}
	return recs, pos, nil
}

func (s *seqSource) Committed(context.Context, engine.Positions) error { return nil }
func (s *seqSource) Close() error                                      { return nil }

// durable is what survives a crash: visible output and the sink checkpoint.
type durable struct {
	mu      sync.Mutex
	visible [][]byte
	epoch   uint64
	at      engine.Positions
	cpEpoch uint64 // the engine's checkpoint store (non-exactly-once modes)
	cpAt    engine.Positions
}

// memSink is a transactional sink over durable; staged output lives in the
// instance, so a crash (dropping the instance) loses it.
type memSink struct {
	d      *durable
	staged map[uint64][][]byte
}

func (s *memSink) Open(context.Context, string) (uint64, engine.Positions, error) {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	return s.d.epoch, s.d.at.Clone(), nil
}

func (s *memSink) Write(_ context.Context, epoch uint64, recs []engine.Record) error {
	if s.staged == nil {
		s.staged = map[uint64][][]byte{}
	}
	for _, r := range recs {
		s.staged[epoch] = append(s.staged[epoch], r.Value)
	}
	return nil
}

func (s *memSink) Commit(_ context.Context, epoch uint64, until engine.Positions) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.d.epoch == epoch && s.d.at.Equal(until) {
		return nil
	}
	if s.d.epoch != epoch-1 {
		return fmt.Errorf("commit %d on %d: %w", epoch, s.d.epoch, engine.ErrFenced)
	}
	s.d.visible = append(s.d.visible, s.staged[epoch]...)
	delete(s.staged, epoch)
	s.d.epoch, s.d.at = epoch, until.Clone()
	return nil
}

func (s *memSink) Abort(_ context.Context, epoch uint64) error { delete(s.staged, epoch); return nil }
func (s *memSink) Close() error                                { return nil }

// appendSink is not transactional (like stdout): Write is visible at once.
type appendSink struct{ d *durable }

func (s *appendSink) Open(context.Context, string) (uint64, engine.Positions, error) {
	return 0, nil, nil
}

func (s *appendSink) Write(_ context.Context, _ uint64, recs []engine.Record) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	for _, r := range recs {
		s.d.visible = append(s.d.visible, r.Value)
	}
	return nil
}
func (s *appendSink) Commit(context.Context, uint64, engine.Positions) error { return nil }
func (s *appendSink) Abort(context.Context, uint64) error                    { return nil }
func (s *appendSink) Close() error                                           { return nil }

type memCheckpoints struct{ d *durable }

func (c memCheckpoints) Load(context.Context) (uint64, engine.Positions, error) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	return c.d.cpEpoch, c.d.cpAt.Clone(), nil
}

func (c memCheckpoints) Save(_ context.Context, e uint64, at engine.Positions) error {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	c.d.cpEpoch, c.d.cpAt = e, at.Clone()
	return nil
}

// fault points
type point int

const (
	beforeWrite point = iota
	beforeCommit
	afterCommit // committed, but the engine hears an error
	beforeSave
	afterSave
	numPoints
)

var errCrash = errors.New("injected crash")

// faults decides, per call at a point, whether to fail there.
type faults struct {
	rng       *rand.Rand
	points    []point
	prob      float64
	retryable bool // a transient failure the engine retries, instead of a crash
	injected  [numPoints]int
}

func (f *faults) hit(p point) error {
	for _, q := range f.points {
		if q == p && f.rng.Float64() < f.prob {
			f.injected[p]++
			if f.retryable {
				return engine.Retryable(errCrash)
			}
			return errCrash
		}
	}
	return nil
}

type faultySink struct {
	engine.Sink
	f *faults
}

func (s faultySink) Write(ctx context.Context, e uint64, recs []engine.Record) error {
	if err := s.f.hit(beforeWrite); err != nil {
		return err
	}
	return s.Sink.Write(ctx, e, recs)
}

func (s faultySink) Commit(ctx context.Context, e uint64, until engine.Positions) error {
	if err := s.f.hit(beforeCommit); err != nil {
		return err
	}
	if err := s.Sink.Commit(ctx, e, until); err != nil {
		return err
	}
	return s.f.hit(afterCommit)
}

type faultyCheckpoints struct {
	engine.CheckpointStore
	f *faults
}

func (c faultyCheckpoints) Save(ctx context.Context, e uint64, at engine.Positions) error {
	if err := c.f.hit(beforeSave); err != nil {
		return err
	}
	if err := c.CheckpointStore.Save(ctx, e, at); err != nil {
		return err
	}
	return c.f.hit(afterSave)
}

// runUntilDone restarts the pipeline after every crash until the whole
// sequence is through; it returns the visible output and the number of
// restarts.
func runUntilDone(t *testing.T, d engine.Delivery, transactional bool, f *faults) ([][]byte, int) {
	t.Helper()
	dur := &durable{}
	restarts := 0
	for ; restarts < 1000; restarts++ {
		var sink engine.Sink = &memSink{d: dur}
		if !transactional {
			sink = &appendSink{d: dur}
		}
		p, err := engine.New(engine.Config{
			Name: "crash", Delivery: d, MaxRecordsPerPartition: 7,
			Logger:      slog.New(slog.DiscardHandler),
			IdleExit:    20 * time.Millisecond,
			MinBackoff:  time.Millisecond,
			Source:      &seqSource{},
			Sink:        faultySink{Sink: sink, f: f},
			Checkpoints: faultyCheckpoints{CheckpointStore: memCheckpoints{d: dur}, f: f},
		})
		if err != nil {
			t.Fatal(err)
		}
		err = p.Run(context.Background())
		if err == nil {
			return dur.visible, restarts
		}
		if !errors.Is(err, errCrash) {
			t.Fatalf("run %d: %v", restarts, err)
		}
	}
	t.Fatalf("no progress after %d restarts", restarts)
	return nil, 0
}

// tally counts each expected value's occurrences and checks per-partition
// order of first appearances.
func tally(t *testing.T, out [][]byte) (missing, dups int) {
	t.Helper()
	seen := map[string]int{}
	last := [seqPartitions]int{-1, -1, -1}
	for _, v := range out {
		seen[string(v)]++
		var p, i int
		if _, err := fmt.Sscanf(string(v), "%d:%d", &p, &i); err != nil {
			t.Fatalf("bad value %q", v)
		}
		if seen[string(v)] == 1 {
			if i <= last[p] {
				t.Errorf("partition %d: %d appears after %d", p, i, last[p])
			}
			last[p] = i
		}
	}
	for p := range seqPartitions {
		for i := range seqPerPart {
			n := seen[strconv.Itoa(p)+":"+strconv.Itoa(i)]
			if n == 0 {
				missing++
			}
			if n > 1 {
				dups += n - 1
			}
		}
	}
	return missing, dups
}

func TestCrashExactlyOnce(t *testing.T) {
	for _, pt := range []point{beforeWrite, beforeCommit, afterCommit} {
		for _, retryable := range []bool{false, true} {
			t.Run(fmt.Sprintf("point%d/retryable=%v", pt, retryable), func(t *testing.T) {
				f := &faults{rng: rand.New(rand.NewPCG(1, uint64(pt))), points: []point{pt}, prob: 0.3, retryable: retryable}
				out, restarts := runUntilDone(t, engine.ExactlyOnce, true, f)
				if f.injected[pt] == 0 {
					t.Fatal("no fault was injected; the test proves nothing")
				}
				missing, dups := tally(t, out)
				if missing != 0 || dups != 0 || len(out) != seqPartitions*seqPerPart {
					t.Fatalf("exactly-once broken: %d missing, %d duplicates, %d records out (faults %d, restarts %d)",
						missing, dups, len(out), f.injected[pt], restarts)
				}
				// Exactly-once output is in order per partition with no gaps.
				next := [seqPartitions]int{}
				for _, v := range out {
					var p, i int
					fmt.Sscanf(string(v), "%d:%d", &p, &i)
					if i != next[p] {
						t.Fatalf("partition %d: got %d, want %d", p, i, next[p])
					}
					next[p]++
				}
			})
		}
	}
}

func TestCrashAllPointsAtOnce(t *testing.T) {
	all := []point{beforeWrite, beforeCommit, afterCommit, beforeSave, afterSave}
	for _, d := range []engine.Delivery{engine.ExactlyOnce, engine.AtLeastOnce, engine.AtMostOnce} {
		t.Run(string(d), func(t *testing.T) {
			f := &faults{rng: rand.New(rand.NewPCG(7, 7)), points: all, prob: 0.1}
			out, _ := runUntilDone(t, d, true, f)
			missing, dups := tally(t, out)
			switch d {
			case engine.ExactlyOnce, engine.AtLeastOnce:
				// A transactional sink makes at-least-once exact too: the
				// sink's positions are ahead of the checkpoint store.
				if missing != 0 || dups != 0 {
					t.Fatalf("%d missing, %d duplicates", missing, dups)
				}
			case engine.AtMostOnce:
				if dups != 0 {
					t.Fatalf("at-most-once duplicated %d records", dups)
				}
			}
		})
	}
}

func TestCrashAtLeastOnceDuplicatesNeverLoses(t *testing.T) {
	// Output visible before positions are saved: a crash in between replays.
	f := &faults{rng: rand.New(rand.NewPCG(2, 2)), points: []point{beforeCommit, beforeSave}, prob: 0.3}
	out, _ := runUntilDone(t, engine.AtLeastOnce, false, f)
	missing, dups := tally(t, out)
	if missing != 0 {
		t.Fatalf("at-least-once lost %d records", missing)
	}
	if dups == 0 {
		t.Fatalf("expected replays to duplicate records after %v crashes", f.injected)
	}
	t.Logf("%d duplicates after %v injected crashes", dups, f.injected)
}

func TestCrashAtMostOnceLosesNeverDuplicates(t *testing.T) {
	// Positions saved before output: a crash in between skips the batch.
	f := &faults{rng: rand.New(rand.NewPCG(3, 3)), points: []point{beforeWrite, beforeCommit, afterSave}, prob: 0.3}
	for _, transactional := range []bool{true, false} {
		t.Run(fmt.Sprintf("transactional=%v", transactional), func(t *testing.T) {
			out, _ := runUntilDone(t, engine.AtMostOnce, transactional, f)
			missing, dups := tally(t, out)
			if dups != 0 {
				t.Fatalf("at-most-once duplicated %d records", dups)
			}
			if missing == 0 {
				t.Fatalf("expected crashes after saving positions to lose records (faults %v)", f.injected)
			}
			t.Logf("%d lost after %v injected crashes", missing, f.injected)
		})
	}
}
