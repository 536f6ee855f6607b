package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/wal"
)

// block is the block being built by the poll loop: the records polled
// since the last store, encoded, and where the group offsets go once it is
// logged: just past each partition's last polled record.
type block struct {
	enc  *wal.Block
	last map[engine.TopicPartition]kgo.EpochOffset
}

func newBlock() *block {
	return &block{enc: &wal.Block{}, last: map[engine.TopicPartition]kgo.EpochOffset{}}
}

// rateWindow enforces max-rate: each partition polls at most budget
// records per block interval. Windows are fixed intervals, not blocks, so
// a block cut early (cutEarly) does not give a partition a new budget.
type rateWindow struct {
	budget int64 // per partition and window; 0 = no max-rate
	used   map[engine.TopicPartition]int64
	paused map[string][]int32 // partitions at their budget until the window ends
}

// room is the most one poll may return without taking a partition past
// its budget, if it returned them all from one partition.
func (w *rateWindow) room() int64 {
	most := int64(0)
	for tp, n := range w.used {
		if !contains(w.paused, tp) {
			most = max(most, n)
		}
	}
	return w.budget - most
}

// loop polls the group continuously and stores a block every
// BlockInterval, or sooner: when it reaches maxBlockRecords, when the
// read-ahead is full, or when a Next waits for records (cutEarly).
//
// A block cut before its interval ends is stored in the background while
// the loop polls and encodes the next one (writing and fsyncing a block
// took as long as polling it); blocks are stored one at a time, in order.
// At the end of every interval the loop waits for that store and stores
// its own block before it lets a rebalance go ahead, so a rebalance never
// finds records polled and not logged, and waits at most about an
// interval, as before.
func (r *Receiver) loop(ctx context.Context) {
	defer close(r.done)
	rate := rateWindow{used: map[engine.TopicPartition]int64{}, paused: map[string][]int32{}}
	if r.cfg.MaxRate > 0 {
		rate.budget = max(int64(float64(r.cfg.MaxRate)*r.cfg.BlockInterval.Seconds()), 1)
	}
	b := newBlock()
	var headers []engine.Header // reused: Add copies what it is given
	var listed time.Time
	// The block being stored in the background: its result and size.
	var storing chan error
	var storingN int64
	// collect takes the background store's result, waiting for it if
	// wait; done is false while it is still running.
	collect := func(wait bool) (done bool, err error) {
		if storing == nil {
			return true, nil
		}
		if !wait {
			select {
			case err = <-storing:
			default:
				return false, nil
			}
		} else {
			err = <-storing
		}
		storing, storingN = nil, 0
		return true, err
	}
	finish := func() error {
		_, err := collect(true)
		return err
	}
	// Whatever ends the loop, the block being stored is in the log or
	// failed before Close goes on.
	defer finish()
	// cut is when the block being built is stored at the latest, and the
	// end of the max-rate window.
	cut := time.Now().Add(r.cfg.BlockInterval)
	for {
		if since := time.Since(listed); since >= r.lagsEvery() || since >= listLagsRetry && r.lagsStale() {
			r.listLags(ctx)
			listed = time.Now()
		}
		// A finished store's block counts as stored from now on.
		if _, err := collect(false); err != nil {
			if ctx.Err() == nil {
				r.fail(err)
			}
			return
		}
		// The read-ahead holds what is stored and not handed out, the
		// block being stored and the block being built.
		ahead := storingN + int64(b.enc.Len())
		room := min(int64(maxBlockRecords-b.enc.Len()), r.room()-ahead)
		if room <= 0 && b.enc.Len() == 0 {
			// The read-ahead is full: wait for a Next to take records (or
			// the background store to hand its block over).
			if !r.waitForRoom(ctx, cut) {
				return
			}
			if time.Now().Before(cut) {
				continue
			}
		} else if room > 0 && time.Now().Before(cut) {
			if rate.budget > 0 {
				room = min(room, rate.room())
			}
			fetches := r.poll(ctx, cut, int(room))
			if ctx.Err() != nil || r.failed() {
				// Failed while assigning partitions, or storing: nothing
				// more is logged or committed.
				return
			}
			if err := r.fetchError(ctx, fetches, b); err != nil {
				if errors.Is(err, ErrDataLoss) {
					// What was polled before the gap is read: logged and
					// committed, the group resumes where the error's
					// range begins.
					serr := finish()
					if serr == nil {
						serr = r.h.store(ctx, b)
					}
					if serr != nil {
						err = errors.Join(err, serr)
					}
				}
				if ctx.Err() == nil {
					r.fail(err)
				}
				return
			}
			headers = r.absorb(b, fetches, &rate, headers)
			r.passOver(b)
			full := b.enc.Len() >= maxBlockRecords || storingN+int64(b.enc.Len()) >= r.room()
			if !full && time.Now().Before(cut) && !r.cutEarly(b) {
				continue
			}
		}
		if err := finish(); err != nil {
			if ctx.Err() == nil {
				r.fail(err)
			}
			return
		}
		if time.Now().Before(cut) {
			// Cut early: stored in the background, the interval (and
			// the max-rate window) goes on.
			storing, storingN = make(chan error, 1), int64(b.enc.Len())
			go func(b *block, done chan<- error) {
				done <- r.h.store(ctx, b)
				// Wakes the loop if it waits for room: the block it was
				// storing now counts as stored.
				r.publish(func() {})
			}(b, storing)
			b = newBlock()
			continue
		}
		if err := r.h.store(ctx, b); err != nil {
			if ctx.Err() == nil {
				r.fail(err)
			}
			return
		}
		b = newBlock()
		// Nothing polled is held now: a rebalance may go ahead.
		r.cl.AllowRebalance()
		if len(rate.paused) > 0 {
			r.cl.ResumeFetchPartitions(rate.paused)
			clear(rate.paused)
		}
		clear(rate.used)
		cut = time.Now().Add(r.cfg.BlockInterval)
	}
}

// room is how many more records the read-ahead takes beyond those stored
// and not yet handed out; the block being built counts against it.
func (r *Receiver) room() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.readAhead - (r.readable - r.pos)
}

// waitForRoom waits until a Next takes records or until is reached; false
// if ctx ended.
func (r *Receiver) waitForRoom(ctx context.Context, until time.Time) bool {
	r.mu.Lock()
	r.full = true
	// Published (for tests that wait for the receiver to be as far ahead
	// as it goes), and the channel of the next change taken in the same
	// step, so that a Next taking records right after is not missed.
	close(r.changed)
	r.changed = make(chan struct{})
	changed := r.changed
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.full = false
		r.mu.Unlock()
	}()
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-changed:
	case <-t.C:
	}
	return true
}

// poll polls up to n records until cut, or until a Next that starts
// waiting for records ends the poll early (Next calls interrupt).
func (r *Receiver) poll(ctx context.Context, cut time.Time, n int) kgo.Fetches {
	pollCtx, cancel := context.WithDeadline(ctx, cut)
	defer cancel()
	r.mu.Lock()
	r.interrupt = cancel
	r.mu.Unlock()
	fetches := r.cl.PollRecords(pollCtx, n)
	r.mu.Lock()
	r.interrupt = nil
	r.mu.Unlock()
	return fetches
}

// cutEarly says whether to store the block now rather than when it is
// full or its interval ends: a Next waits for records and the block has
// some. Caught up (the partitions read to their ends), that is the
// latency of continuous pipelines: a record is handed out a poll and an
// fsync after it arrives, not up to a block interval later; behind, it
// keeps the engine busy while the receiver is slower than the batches. The
// order stays that of every block: logged (fsynced), then handed out and
// its group offsets committed.
func (r *Receiver) cutEarly(b *block) bool {
	if b.enc.Len() == 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waiting
}

// polledPartition is one partition's records of a poll.
type polledPartition struct {
	tp      engine.TopicPartition
	st      *recvPartition
	records []*kgo.Record
	end     int64 // its end as the fetch reported it
	logged  int64
}

// absorb adds what a poll returned to the block: it encodes each
// partition's records that the log does not hold yet (transaction markers
// are only positions), then notes each partition's position and end and
// the block's size in one step, and pauses partitions that reached their
// max-rate budget. It returns headers for reuse.
func (r *Receiver) absorb(b *block, fetches kgo.Fetches, rate *rateWindow, headers []engine.Header) []engine.Header {
	var polled []polledPartition
	r.gmu.Lock()
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		end := p.LastStableOffset
		if end < 0 {
			end = p.HighWatermark
		}
		tp := engine.TopicPartition{Topic: p.Topic, Partition: p.Partition}
		// Partitions are never removed from parts, so st stays valid
		// outside the lock; only this goroutine writes logged.
		st := r.part(tp)
		polled = append(polled, polledPartition{tp: tp, st: st, records: p.Records, end: end, logged: st.logged})
	})
	r.gmu.Unlock()
	// Sized first, so that the poll's entries go into one chunk of the
	// block, allocated once.
	size := 0
	for _, f := range polled {
		for _, m := range f.records {
			if !m.Attrs.IsControl() && m.Offset > f.logged {
				var rec engine.Record
				rec, headers = toEntry(m, headers)
				size += wal.EncodedSize(&rec)
			}
		}
	}
	b.enc.Grow(size)
	before := b.enc.Len()
	var pause map[string][]int32
	for _, f := range polled {
		last := f.records[len(f.records)-1]
		b.last[f.tp] = kgo.EpochOffset{Epoch: last.LeaderEpoch, Offset: last.Offset + 1}
		for _, m := range f.records {
			if m.Attrs.IsControl() || m.Offset <= f.logged {
				// A transaction marker, or already in the write-ahead log.
				continue
			}
			var rec engine.Record
			rec, headers = toEntry(m, headers)
			b.enc.Add(&rec)
		}
		if rate.budget == 0 {
			continue
		}
		rate.used[f.tp] += int64(len(f.records))
		if rate.used[f.tp] >= rate.budget && !contains(rate.paused, f.tp) {
			if pause == nil {
				pause = map[string][]int32{}
			}
			rate.paused[f.tp.Topic] = append(rate.paused[f.tp.Topic], f.tp.Partition)
			pause[f.tp.Topic] = append(pause[f.tp.Topic], f.tp.Partition)
		}
	}
	// The polled records leave the partitions' lag and join the block
	// together, as Backlog sees them.
	r.gmu.Lock()
	for _, f := range polled {
		f.st.end = max(f.st.end, f.end)
		f.st.at = f.records[len(f.records)-1].Offset + 1
	}
	r.polled += int64(b.enc.Len() - before)
	r.gmu.Unlock()
	if len(pause) > 0 {
		// Whatever the client buffered for them is dropped and fetched
		// again when the window ends.
		r.cl.PauseFetchPartitions(pause)
	}
	return headers
}

// toEntry is m as the block encodes it, its headers in scratch (returned
// for reuse: the block copies what it is given).
func toEntry(m *kgo.Record, scratch []engine.Header) (engine.Record, []engine.Header) {
	rec := engine.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
		Key: m.Key, Value: m.Value, Time: m.Timestamp}
	if len(m.Headers) > 0 {
		scratch = scratch[:0]
		for _, h := range m.Headers {
			scratch = append(scratch, engine.Header{Key: h.Key, Value: h.Value})
		}
		rec.Headers = scratch
	}
	return rec, scratch
}

// handOver lets Next hand out a stored block. The block's records leave
// the block being built at the same moment, as Backlog sees them.
func (r *Receiver) handOver(enc *wal.Block) {
	r.gmu.Lock()
	defer r.gmu.Unlock()
	r.polled -= int64(enc.Len())
	if enc.Len() == 0 {
		return
	}
	r.publish(func() {
		r.mem = append(r.mem, memBlock{first: r.readable, enc: enc})
		r.readable += int64(enc.Len())
	})
}

func (r *Receiver) readableEnd() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.readable
}

// fetchError returns what a poll reports that the receiver cannot go on
// from; the rest franz-go recovers from itself and is logged, and a
// partition that fell behind retention goes by on-data-loss.
//
// A partition erring with something other than a Kafka error code may be
// stopped at a batch that does not decode: on-corrupt (corrupt.go) decides.
func (r *Receiver) fetchError(ctx context.Context, fetches kgo.Fetches, b *block) error {
	var behind []engine.TopicPartition
	for _, fe := range fetches.Errors() {
		var session *kgo.ErrGroupSession
		var loss *kgo.ErrDataLoss
		switch {
		case errors.Is(fe.Err, context.DeadlineExceeded), errors.Is(fe.Err, context.Canceled):
			// The block's deadline, a waiting Next, or Close.
		case errors.Is(fe.Err, kerr.OffsetOutOfRange):
			behind = append(behind, engine.TopicPartition{Topic: fe.Topic, Partition: fe.Partition})
		case errors.As(fe.Err, &loss):
			// The broker lost records (an unclean leader election), not
			// retention: franz-go resumes where the logs diverged.
			r.log.Warn("records lost, reading on from where the broker has them", "partition", fmt.Sprintf("%s/%d", fe.Topic, fe.Partition), "err", fe.Err)
		case errors.As(fe.Err, &session):
			r.log.Warn("consumer group session ended; rejoining", "group", r.cfg.Group, "err", fe.Err)
		case suspect(fe.Err):
			tp := engine.TopicPartition{Topic: fe.Topic, Partition: fe.Partition}
			found, err := r.corruptAt(ctx, tp, r.fetchedTo(tp, fetches, b))
			if err != nil {
				return err
			}
			if !found {
				return engine.Retryable(fmt.Errorf("kafka receiver %s/%d: %w", fe.Topic, fe.Partition, fe.Err))
			}
		default:
			return engine.Retryable(fmt.Errorf("kafka receiver %s/%d: %w", fe.Topic, fe.Partition, fe.Err))
		}
	}
	if len(behind) == 0 {
		return nil
	}
	return r.outOfRange(ctx, behind)
}
