// Package generate is a deterministic source for tests, demos and
// benchmarks. Record i (counting from 0 across all partitions) has the
// decimal string of i as its value, "k-<i mod keys>" as its key and lands
// in partition i mod partitions, at offset i / partitions. Its position is
// the next offset per partition, so it resumes exactly where a sink says.
package generate

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// Source implements engine.Source.
type Source struct {
	topic      string
	count      int64 // 0 = unbounded
	partitions int32
	keys       int64
	rate       int64 // records/s; 0 = unlimited

	next    []int64 // next offset per partition
	opened  time.Time
	emitted int64 // records emitted since Open, for the rate limit
	now     func() time.Time
}

// New returns a generate source for cfg.
func New(cfg Config) (*Source, error) {
	// The same bounds as lint's, for a Config built in Go.
	if cfg.Partitions < 1 || cfg.Partitions > MaxPartitions {
		return nil, fmt.Errorf("generate: partitions is %d; use 1 to %d", cfg.Partitions, MaxPartitions)
	}
	if cfg.Count < 0 || cfg.Keys < 0 || cfg.Rate < 0 {
		return nil, fmt.Errorf("generate: count, keys and rate must not be negative")
	}
	if cfg.Count > MaxCount || cfg.Keys > MaxKeys || cfg.Rate > MaxRate {
		return nil, fmt.Errorf("generate: count, keys or rate is above its maximum (%d, %d, %d); write 0 for unbounded count or unlimited rate", MaxCount, MaxKeys, MaxRate)
	}
	return &Source{
		topic:      cfg.Topic,
		count:      cfg.Count,
		partitions: cfg.Partitions,
		keys:       cfg.Keys,
		rate:       cfg.Rate,
		now:        time.Now,
	}, nil
}

// Open implements engine.Source.
func (s *Source) Open(_ context.Context, from engine.Positions) error {
	s.next = make([]int64, s.partitions)
	for tp, off := range from {
		if tp.Topic != s.topic || tp.Partition < 0 || tp.Partition >= s.partitions || off < 0 {
			return fmt.Errorf("generate: cannot resume at %s:%d: the sink's positions belong to another source (topic %q, %d partitions); point the sink somewhere new or restore the source settings",
				tp, off, s.topic, s.partitions)
		}
		s.next[tp.Partition] = off
	}
	s.opened = s.now()
	s.emitted = 0
	return nil
}

// size returns how many records partition p holds in total (-1 = unbounded).
func (s *Source) size(p int32) int64 {
	if s.count == 0 {
		return -1
	}
	n := s.count / int64(s.partitions)
	if int64(p) < s.count%int64(s.partitions) {
		n++
	}
	return n
}

// budget is how many records the rate limit allows now (-1 = unlimited).
func (s *Source) budget() int64 {
	if s.rate == 0 {
		return -1
	}
	elapsed := s.now().Sub(s.opened)
	return max(int64(elapsed.Seconds()*float64(s.rate))-s.emitted, 0)
}

// Next implements engine.Source. Records are handed out in global sequence
// order, so a rate-limited or capped batch still takes the oldest records
// of every partition first.
func (s *Source) Next(ctx context.Context, limits engine.Limits) ([]engine.Record, engine.Positions, error) {
	deadline := s.now().Add(limits.Wait)
	for {
		recs := s.take(limits)
		if len(recs) > 0 || !s.now().Before(deadline) {
			return recs, s.positions(), nil
		}
		// Nothing available: wait for the rate limit to allow one more
		// record, or for the deadline when the source is exhausted.
		wait := time.Until(deadline)
		if s.rate > 0 && !s.exhausted() {
			wait = min(wait, time.Second/time.Duration(s.rate)+time.Millisecond)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (s *Source) exhausted() bool {
	for p := range s.partitions {
		if n := s.size(p); n < 0 || s.next[p] < n {
			return false
		}
	}
	return true
}

func (s *Source) take(limits engine.Limits) []engine.Record {
	budget := s.budget()
	if limits.MaxRecords > 0 && (budget < 0 || int64(limits.MaxRecords) < budget) {
		budget = int64(limits.MaxRecords)
	}
	// avail[p] is how many records partition p may contribute.
	avail := make([]int64, s.partitions)
	total := int64(0)
	for p := range s.partitions {
		n := s.size(p)
		a := int64(1 << 62)
		if n >= 0 {
			a = n - s.next[p]
		}
		if limits.MaxRecordsPerPartition > 0 {
			a = min(a, int64(limits.MaxRecordsPerPartition))
		}
		avail[p] = max(a, 0)
		total += avail[p]
	}
	if budget >= 0 {
		total = min(total, budget)
	}
	if total == 0 {
		return nil
	}
	// Walk global sequence numbers from the smallest pending one, skipping
	// partitions that reached their cap, until total records are taken.
	recs := make([]engine.Record, 0, total)
	buf := make([]byte, 0, total*12)
	now := s.now()
	taken := make([]int64, s.partitions)
	for len(recs) < int(total) {
		// The partition whose next record has the smallest sequence.
		best, bestSeq := int32(-1), int64(0)
		for p := range s.partitions {
			if taken[p] >= avail[p] {
				continue
			}
			seq := (s.next[p]+taken[p])*int64(s.partitions) + int64(p)
			if best < 0 || seq < bestSeq {
				best, bestSeq = p, seq
			}
		}
		if best < 0 {
			break
		}
		off := s.next[best] + taken[best]
		taken[best]++
		start := len(buf)
		buf = strconv.AppendInt(buf, bestSeq, 10)
		value := buf[start:len(buf):len(buf)]
		var key []byte
		if s.keys > 0 {
			start = len(buf)
			buf = append(buf, "k-"...)
			buf = strconv.AppendInt(buf, bestSeq%s.keys, 10)
			key = buf[start:len(buf):len(buf)]
		}
		recs = append(recs, engine.Record{
			Topic: s.topic, Partition: best, Offset: off,
			Key: key, Value: value, Time: now,
		})
	}
	for p := range s.partitions {
		s.next[p] += taken[p]
	}
	s.emitted += int64(len(recs))
	return recs
}

func (s *Source) positions() engine.Positions {
	pos := make(engine.Positions, s.partitions)
	for p := range s.partitions {
		pos[engine.TopicPartition{Topic: s.topic, Partition: p}] = s.next[p]
	}
	return pos
}

// Backlog implements engine.Backlogger: how many records Next could return
// now. A bounded source counts what is left of count. A rate limit counts
// only the records the rate already allows, because the rest do not exist
// yet (like records not yet produced to a topic): a rate-limited pipeline
// keeps its interval cadence instead of reading tiny batches back to back.
// An unbounded source without a rate is always behind (math.MaxInt64), so
// --idle-exit never ends it. Unknown (false) only before Open.
func (s *Source) Backlog() (int64, bool) {
	if s.next == nil {
		return 0, false
	}
	left := int64(math.MaxInt64)
	if s.count > 0 {
		left = 0
		for p := range s.partitions {
			left += max(s.size(p)-s.next[p], 0)
		}
	}
	if b := s.budget(); b >= 0 {
		left = min(left, b)
	}
	return left, true
}

// Committed implements engine.Source; the generator keeps no state outside
// the sink.
func (s *Source) Committed(context.Context, engine.Positions) error { return nil }

// Close implements engine.Source.
func (s *Source) Close() error { return nil }
