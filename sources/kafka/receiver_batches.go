package kafka

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/wal"
)

// memBlock is a stored block kept in memory until it is handed out: its
// records are the sequences first to first+enc.Len()-1.
type memBlock struct {
	first int64
	enc   *wal.Block
}

// Next implements engine.Source: the records stored since the last batch,
// up to the limits. While none are stored it waits for them up to
// limits.Wait, or, when records are on their way (polled into the block
// being built, or known to wait on assigned partitions), for the next
// store even past limits.Wait: like a direct read fetching what it knows
// exists, it returns them rather than nothing, which would make the engine
// wait an interval while behind. A waiting Next makes the poll loop store
// its block at once (cutEarly), so that wait is a poll and an fsync, and
// at most a block interval.
func (r *Receiver) Next(ctx context.Context, limits engine.Limits) ([]engine.Record, engine.Positions, error) {
	n := r.batchCap(limits)
	r.mu.Lock()
	r.readAhead = readAheadBatches * n
	if n == 0 {
		r.readAhead = readAheadUncapped
	}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.waiting = false
		r.mu.Unlock()
	}()
	var deadline <-chan time.Time
	for {
		r.mu.Lock()
		err, changed, avail := r.err, r.changed, r.readable-r.pos
		if err == nil && avail == 0 && !r.waiting {
			r.waiting = true
			if r.interrupt != nil {
				r.interrupt()
			}
		}
		r.mu.Unlock()
		if err != nil {
			return nil, nil, err
		}
		if avail > 0 {
			if n > 0 {
				avail = min(avail, n)
			}
			return r.take(avail)
		}
		if deadline == nil {
			wait := limits.Wait
			if r.coming() {
				wait = max(wait, r.cfg.BlockInterval)
			}
			t := time.NewTimer(wait)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-deadline:
			return nil, r.positions(), nil
		case <-changed:
		}
	}
}

// coming reports whether records are on their way to being stored:
// polled into the blocks being built and stored, or known to wait on a
// partition assigned to this member (not other members' lag: those
// records never come here).
func (r *Receiver) coming() bool {
	r.gmu.Lock()
	defer r.gmu.Unlock()
	if r.polled > 0 {
		return true
	}
	for _, st := range r.parts {
		if st.assigned && st.at >= 0 && st.at < st.end {
			return true
		}
	}
	return false
}

// batchCap is the most records one batch may take (0: no cap):
// max-records-per-partition for every assigned partition (at least one),
// and the rate controller's max-records for the whole batch. Records are
// handed out in log order, so the cap is on the batch, not on each
// partition's share of it. Before the group has assigned any partition
// (a restart replaying its log), the partitions the log holds count.
func (r *Receiver) batchCap(limits engine.Limits) int64 {
	n := int64(0)
	if limits.MaxRecordsPerPartition > 0 {
		r.gmu.Lock()
		var assigned, logged int64
		for _, st := range r.parts {
			if st.assigned {
				assigned++
			}
			if st.logged >= 0 {
				logged++
			}
		}
		r.gmu.Unlock()
		if assigned == 0 {
			assigned = logged
		}
		n = int64(limits.MaxRecordsPerPartition) * max(assigned, 1)
	}
	if limits.MaxRecords > 0 && (n == 0 || int64(limits.MaxRecords) < n) {
		n = int64(limits.MaxRecords)
	}
	return n
}

// take hands out the n records from r.pos: from the blocks in memory, and
// from the log's files for what was logged before Open (a restart resumes
// below the log's end), which memory does not hold.
func (r *Receiver) take(n int64) ([]engine.Record, engine.Positions, error) {
	r.mu.Lock()
	pos, memFirst := r.pos, r.readable
	blocks := make([]memBlock, 0, 2)
	for _, b := range r.mem {
		if b.first >= pos+n {
			break
		}
		blocks = append(blocks, b)
	}
	if len(r.mem) > 0 {
		memFirst = r.mem[0].first
	}
	r.mu.Unlock()
	var out []engine.Record
	if pos < memFirst {
		var err error
		if out, err = r.h.replay(pos, min(n, memFirst-pos)); err != nil {
			return nil, nil, err
		}
	}
	if int64(len(out)) < n {
		out = append(r.buf.get(int(n)), out...)
	}
	for _, b := range blocks {
		if int64(len(out)) == n {
			break
		}
		i := pos + int64(len(out)) - b.first
		k := min(n-int64(len(out)), int64(b.enc.Len())-i)
		var err error
		if out, err = b.enc.Records(out, int(i), int(k)); err != nil {
			return nil, nil, fmt.Errorf("kafka receiver: block at sequence %d: %w", b.first, err)
		}
	}
	r.mu.Lock()
	r.pos += int64(len(out))
	for len(r.mem) > 0 && r.mem[0].first+int64(r.mem[0].enc.Len()) <= r.pos {
		r.mem[0] = memBlock{}
		r.mem = r.mem[1:]
	}
	// The poll loop may be waiting for room.
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	r.noteNext(out)
	return trimmed(out), r.positions(), nil
}

// noteNext moves the next Kafka offset per partition past recs. Records
// come in runs of one partition, so this is a map operation per run, not
// per record.
func (r *Receiver) noteNext(recs []engine.Record) {
	for i := 0; i < len(recs); {
		j := i + 1
		for j < len(recs) && recs[j].Partition == recs[i].Partition && recs[j].Topic == recs[i].Topic {
			j++
		}
		tp := engine.TopicPartition{Topic: recs[i].Topic, Partition: recs[i].Partition}
		r.next[tp] = max(r.next[tp], recs[j-1].Offset+1)
		i = j
	}
	if len(recs) > 0 {
		r.h.handedOut(r.pos, r.next)
	}
}

func (r *Receiver) positions() engine.Positions {
	return r.h.positions(r.pos, r.next)
}

// Backlog implements engine.Backlogger: the records stored and not yet
// handed out, those polled into the blocks being built and stored, each
// assigned partition's records from where it reads next to its last
// stable offset as of the latest fetch or listing, and the lag of the
// subscribed partitions other members hold (listLags). Unknown until the
// group has assigned partitions, the end and position of every one of them
// are known, and the others' lag was listed for the current assignment,
// so that a pipeline whose group has not yet given it everything is not
// taken for caught up.
func (r *Receiver) Backlog() (int64, bool) {
	r.gmu.Lock()
	defer r.gmu.Unlock()
	r.mu.Lock()
	n := r.readable - r.pos + r.polled
	r.mu.Unlock()
	assigned := false
	for _, st := range r.parts {
		if !st.assigned {
			continue
		}
		if st.at < 0 || st.end < 0 {
			return 0, false
		}
		assigned = true
		n += max(st.end-st.at, 0)
	}
	if !assigned || r.othersGen != r.assignGen {
		return 0, false
	}
	for _, lag := range r.others {
		n += lag
	}
	return n, true
}

// Committed implements engine.Source: the handoff acknowledges until (a
// write-ahead log is trimmed below what the sink committed and the group's
// offsets cover; without a log, at-least-once commits the group offsets
// now), and the lag gauges are set from what was committed.
func (r *Receiver) Committed(ctx context.Context, until engine.Positions) error {
	acked, err := r.h.committed(ctx, until)
	for tp, off := range acked {
		r.acked[tp] = off
	}
	r.reportLag()
	return err
}

// reportLag sets the lag gauges: per partition, the records between what
// the sink committed and the partition's last stable offset as of the
// latest fetch or listing.
func (r *Receiver) reportLag() {
	if r.cfg.Metrics == nil {
		return
	}
	r.gmu.Lock()
	defer r.gmu.Unlock()
	for tp, next := range r.acked {
		if st := r.parts[tp]; st != nil && st.end >= 0 {
			r.cfg.Metrics.lag(r.cfg.Pipeline, tp, st.end-next)
		}
	}
}
