package engine_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// Fakes for the overlap and idle-exit tests. fakeSource fails the test if
// any two of its methods ever run at once (the engine's threading contract)
// and lets a test see and gate its Next calls; orderSink fails it if an
// epoch is committed out of order or a batch does not start exactly where
// the one before it ended.

const fakeTopic = "fake"

var errInjected = errors.New("injected failure")

// chance fails with probability prob from its own generator, so faults
// injected on different goroutines do not share one.
type chance struct {
	mu       sync.Mutex
	rng      *rand.Rand
	prob     float64
	injected atomic.Int64
}

func newChance(seed uint64, prob float64) *chance {
	return &chance{rng: rand.New(rand.NewPCG(seed, seed)), prob: prob}
}

func (c *chance) fail() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	hit := c.rng.Float64() < c.prob
	c.mu.Unlock()
	if !hit {
		return nil
	}
	c.injected.Add(1)
	return engine.Retryable(errInjected)
}

// fakeSource serves offsets 0..perPart-1 of each partition; record (p, i)
// has the value "p:i".
type fakeSource struct {
	t          *testing.T
	partitions int32
	perPart    int64
	nextFault  *chance
	// beforeNext, if set, runs at the start of Next call n (from 1).
	beforeNext func(ctx context.Context, n int64)

	busy  atomic.Int32
	calls atomic.Int64 // Next calls so far

	mu      sync.Mutex
	started map[int64]chan struct{} // closed once Next call n has started
	lastAck engine.Positions
	// emptyReads counts the reads that returned nothing since the last one
	// that returned records; firstEmpty is when the first of them started.
	emptyReads int
	firstEmpty time.Time

	next []int64
}

func newFakeSource(t *testing.T, partitions int32, perPart int64) *fakeSource {
	return &fakeSource{t: t, partitions: partitions, perPart: perPart, started: map[int64]chan struct{}{}}
}

// enter marks a method call; the returned func marks its end.
func (s *fakeSource) enter(method string) func() {
	if n := s.busy.Add(1); n != 1 {
		s.t.Errorf("Source.%s called while another Source method runs", method)
	}
	return func() { s.busy.Add(-1) }
}

// nextStarted returns a channel closed once Next has been called n times.
func (s *fakeSource) nextStarted(n int64) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.started[n]
	if !ok {
		ch = make(chan struct{})
		s.started[n] = ch
		if s.calls.Load() >= n {
			close(ch)
		}
	}
	return ch
}

func (s *fakeSource) Open(_ context.Context, from engine.Positions) error {
	defer s.enter("Open")()
	s.next = make([]int64, s.partitions)
	for tp, off := range from {
		s.next[tp.Partition] = off
	}
	return nil
}

func (s *fakeSource) Next(ctx context.Context, l engine.Limits) ([]engine.Record, engine.Positions, error) {
	start := time.Now()
	defer s.enter("Next")()
	s.mu.Lock()
	n := s.calls.Add(1)
	if ch, ok := s.started[n]; ok {
		close(ch)
	} else {
		ch = make(chan struct{})
		close(ch)
		s.started[n] = ch
	}
	s.mu.Unlock()
	if s.beforeNext != nil {
		s.beforeNext(ctx, n)
	}
	if err := s.nextFault.fail(); err != nil {
		return nil, nil, err
	}
	recs := s.take(l)
	s.mu.Lock()
	if len(recs) > 0 {
		s.emptyReads = 0
	} else {
		if s.emptyReads == 0 {
			s.firstEmpty = start
		}
		s.emptyReads++
	}
	s.mu.Unlock()
	if len(recs) == 0 && l.Wait > 0 {
		t := time.NewTimer(l.Wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-t.C:
		}
	}
	return recs, s.positions(), nil
}

// take returns up to the limits, partition by partition.
func (s *fakeSource) take(l engine.Limits) []engine.Record {
	var recs []engine.Record
	for p := range s.partitions {
		for n := 0; s.next[p] < s.perPart && (l.MaxRecordsPerPartition == 0 || n < l.MaxRecordsPerPartition) &&
			(l.MaxRecords == 0 || len(recs) < l.MaxRecords); n++ {
			recs = append(recs, engine.Record{Topic: fakeTopic, Partition: p, Offset: s.next[p],
				Value: fmt.Appendf(nil, "%d:%d", p, s.next[p])})
			s.next[p]++
		}
	}
	return recs
}

func (s *fakeSource) positions() engine.Positions {
	pos := engine.Positions{}
	for p := range s.partitions {
		pos[engine.TopicPartition{Topic: fakeTopic, Partition: p}] = s.next[p]
	}
	return pos
}

func (s *fakeSource) left() int64 {
	var n int64
	for p := range s.partitions {
		n += s.perPart - s.next[p]
	}
	return n
}

func (s *fakeSource) Committed(_ context.Context, until engine.Positions) error {
	defer s.enter("Committed")()
	s.mu.Lock()
	s.lastAck = until.Clone()
	s.mu.Unlock()
	return nil
}

func (s *fakeSource) Close() error {
	defer s.enter("Close")()
	return nil
}

func (s *fakeSource) total() int { return int(s.partitions) * int(s.perPart) }

// backlogSource is fakeSource with Backlogger.
type backlogSource struct{ *fakeSource }

func (s backlogSource) Backlog() (int64, bool) {
	defer s.enter("Backlog")()
	return s.left(), true
}

// flakyTransform passes records through and fails whole batches by chance.
type flakyTransform struct{ fault *chance }

func (f flakyTransform) Process(_ context.Context, in []engine.Record) ([]engine.Record, []engine.Rejected, error) {
	if err := f.fault.fail(); err != nil {
		return nil, nil, err
	}
	return in, nil, nil
}
func (flakyTransform) Close() error { return nil }

// committedRecord is what orderSink keeps of a record.
type committedRecord struct {
	tp     engine.TopicPartition
	offset int64
	epoch  uint64
}

// orderSink is a transactional in-memory sink that checks every commit:
// epochs strictly in order, and each batch's records contiguous from the
// previous commit's positions (its From) to its own (its Until).
type orderSink struct {
	t *testing.T
	// faults before Write, before Commit and after Commit (the commit took
	// effect but the engine hears an error, as when an acknowledgement is
	// lost).
	writeFault, commitFault, lostAck *chance
	// beforeCommit, if set, runs at the start of every Commit.
	beforeCommit func(ctx context.Context, epoch uint64)

	mu      sync.Mutex
	epoch   uint64
	at      engine.Positions
	staged  map[uint64][]committedRecord
	visible []committedRecord
	done    chan struct{} // closed when doneAt records are visible
	doneAt  int
}

func newOrderSink(t *testing.T) *orderSink {
	return &orderSink{t: t, staged: map[uint64][]committedRecord{}, done: make(chan struct{})}
}

func (s *orderSink) Open(context.Context, string) (uint64, engine.Positions, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch, s.at.Clone(), nil
}

func (s *orderSink) Write(_ context.Context, epoch uint64, recs []engine.Record) error {
	if err := s.writeFault.fail(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		s.staged[epoch] = append(s.staged[epoch], committedRecord{
			tp: engine.TopicPartition{Topic: r.Topic, Partition: r.Partition}, offset: r.Offset, epoch: epoch})
	}
	return nil
}

func (s *orderSink) Commit(ctx context.Context, epoch uint64, until engine.Positions) error {
	if s.beforeCommit != nil {
		s.beforeCommit(ctx, epoch)
	}
	if err := s.commitFault.fail(); err != nil {
		return err
	}
	if err := s.commit(epoch, until); err != nil {
		return err
	}
	return s.lostAck.fail()
}

func (s *orderSink) commit(epoch uint64, until engine.Positions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch == epoch && s.at.Equal(until) {
		return nil // a retry after a lost acknowledgement
	}
	if epoch != s.epoch+1 {
		s.t.Errorf("epoch %d committed after epoch %d", epoch, s.epoch)
		return fmt.Errorf("commit %d on %d: %w", epoch, s.epoch, engine.ErrFenced)
	}
	// The batch must start where the last commit ended (From == the
	// previous Until) and run without gaps to its own Until.
	cursor := s.at.Clone()
	if cursor == nil {
		cursor = engine.Positions{}
	}
	for _, r := range s.staged[epoch] {
		if r.offset != cursor[r.tp] {
			s.t.Errorf("epoch %d: %s offset %d follows %d; batches must be contiguous", epoch, r.tp, r.offset, cursor[r.tp]-1)
		}
		cursor[r.tp] = r.offset + 1
	}
	for tp, off := range until {
		if cursor[tp] != off {
			s.t.Errorf("epoch %d: until %s:%d, but its records end at %d", epoch, tp, off, cursor[tp])
		}
	}
	s.visible = append(s.visible, s.staged[epoch]...)
	delete(s.staged, epoch)
	s.epoch, s.at = epoch, until.Clone()
	if s.doneAt > 0 && len(s.visible) == s.doneAt {
		close(s.done)
	}
	return nil
}

func (s *orderSink) Abort(_ context.Context, epoch uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.staged, epoch)
	return nil
}

func (s *orderSink) Close() error { return nil }

// checkExactlyOnce fails t unless every record of src is visible once.
func (s *orderSink) checkExactlyOnce(t *testing.T, src *fakeSource) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[committedRecord]int{}
	for _, r := range s.visible {
		seen[committedRecord{tp: r.tp, offset: r.offset}]++
	}
	missing, dups := 0, 0
	for p := range src.partitions {
		for i := range src.perPart {
			switch n := seen[committedRecord{tp: engine.TopicPartition{Topic: fakeTopic, Partition: p}, offset: i}]; {
			case n == 0:
				missing++
			case n > 1:
				dups += n - 1
			}
		}
	}
	if missing != 0 || dups != 0 || len(s.visible) != src.total() {
		t.Fatalf("%d records visible of %d: %d missing, %d duplicates", len(s.visible), src.total(), missing, dups)
	}
}
