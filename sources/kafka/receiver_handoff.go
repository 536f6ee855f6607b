package kafka

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/wal"
)

// handoff is how a receiver keeps what it polled between Kafka and the
// sink, and so what the sink's positions mean: walHandoff logs every block
// (positions are log sequences, a batch can be replayed: exactly-once),
// queueHandoff keeps blocks only in memory (positions are Kafka offsets,
// the group's offsets say where a restart resumes: at-least-once or
// at-most-once). Open picks one; the rest of the receiver does not ask
// which it has.
//
// store runs on the poll loop (or its background store), one block at a
// time, in order; skipped runs under gmu on the poll loop or a group
// callback; the other methods run in the Source methods, which the engine
// never calls concurrently, and close while no poll loop runs.
type handoff interface {
	// store makes block b safe as the delivery needs, then lets Next hand
	// it out (Receiver.handOver).
	store(ctx context.Context, b *block) error
	// replay returns n records from sequence seq, which memory does not
	// hold: what a restarted receiver resumes below its log's end.
	replay(seq, n int64) ([]engine.Record, error)
	// handedOut notes a batch Next handed out: the records before sequence
	// end, after which each partition's next Kafka offset is next (the
	// receiver's own map: copy what is kept).
	handedOut(end int64, next engine.Positions)
	// positions is what Next returns as its until, with pos the next
	// sequence to hand out and next the next Kafka offset per partition.
	positions(pos int64, next engine.Positions) engine.Positions
	// committed is Source.Committed for positions this handoff returned.
	// It returns the next Kafka offset per partition the sink now holds
	// (for the lag gauges; nil when it learned none), with or without an
	// error.
	committed(ctx context.Context, until engine.Positions) (engine.Positions, error)
	// skipped notes that partition st goes on at start after a loss (or a
	// start policy's log start). gmu is held.
	skipped(st *recvPartition, start int64)
	close() error
}

// walHandoff keeps every block in the write-ahead log, fsynced before its
// group offsets are committed and before Next may hand it out.
type walHandoff struct {
	r *Receiver
	// log is safe for concurrent use: the poll loop appends while Next
	// reads and Committed trims.
	log *wal.WAL
	// handed: batches handed out and not yet committed, in order. Owned
	// by the Source methods.
	handed []handout
}

// handout is a batch handed out with a write-ahead log: the log sequence
// after it and the next Kafka offset per partition once it is committed.
type handout struct {
	until int64
	next  engine.Positions
}

// openWAL opens r's write-ahead log for a receiver resuming at from and
// says where the log ends: the next sequence to hand out is pos, records
// below end are logged already.
func openWAL(r *Receiver, from engine.Positions) (h *walHandoff, pos, end int64, err error) {
	w, err := wal.Open(r.cfg.WALDir)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("receiver write-ahead log: %w", err)
	}
	start, end := w.Bounds()
	pos, ok := from[walPartition]
	if !ok {
		pos = start
	}
	if pos < start || pos > end {
		w.Close()
		return nil, 0, 0, fmt.Errorf("the sink resumes at write-ahead log sequence %d but %s holds %d..%d; the data directory does not belong to this sink's state: restore it, or point the sink somewhere new",
			pos, r.cfg.WALDir, start, end)
	}
	r.gmu.Lock()
	r.loggedSeq, r.groupSeq, r.committing, r.checked = end, start, false, false
	// Records in the log whose group commit may not have happened (a
	// crash between fsync and commit) must not be logged twice: each
	// assigned partition starts after what the log holds.
	for tp, off := range w.MaxOffsets() {
		r.part(tp).logged = off
	}
	r.gmu.Unlock()
	return &walHandoff{r: r, log: w}, pos, end, nil
}

// store appends and fsyncs the block, lets batches have it, then commits
// the group offsets without holding them up: a restarted receiver skips
// what the log holds, whether or not the commit happened. A failed commit
// is retried with the next block, every block interval, and when the
// partition is revoked.
func (h *walHandoff) store(ctx context.Context, b *block) error {
	r := h.r
	end, err := h.log.AppendBlock(b.enc)
	if err != nil {
		return fmt.Errorf("receiver write-ahead log: %w", err)
	}
	r.gmu.Lock()
	for tp, off := range b.enc.MaxOffsets() {
		r.part(tp).logged = off
	}
	for tp, eo := range b.last {
		st := r.part(tp)
		st.pending, st.hasPending = eo, true
	}
	r.loggedSeq = end
	r.gmu.Unlock()
	r.handOver(b.enc)
	if r.readableEnd() != end {
		return fmt.Errorf("receiver write-ahead log: appended up to sequence %d, expected %d", end, r.readableEnd())
	}
	r.commitLogged(ctx)
	return nil
}

func (h *walHandoff) replay(seq, n int64) ([]engine.Record, error) {
	out, err := h.log.Read(seq, int(n))
	if err != nil {
		return nil, fmt.Errorf("receiver write-ahead log: %w", err)
	}
	return out, nil
}

func (h *walHandoff) handedOut(end int64, next engine.Positions) {
	h.handed = append(h.handed, handout{until: end, next: next.Clone()})
}

func (h *walHandoff) positions(pos int64, _ engine.Positions) engine.Positions {
	return engine.Positions{walPartition: pos}
}

// committed trims the log below what the sink committed and the group's
// offsets cover.
func (h *walHandoff) committed(_ context.Context, until engine.Positions) (engine.Positions, error) {
	seq := until[walPartition]
	var acked engine.Positions
	i := 0
	for i < len(h.handed) && h.handed[i].until <= seq {
		acked = h.handed[i].next
		i++
	}
	h.handed = h.handed[i:]
	h.r.gmu.Lock()
	seq = min(seq, h.r.groupSeq)
	h.r.gmu.Unlock()
	return acked, h.log.Trim(seq)
}

// skipped owes the group the new start, so a restart before the
// partition's next record does not count the loss again.
func (h *walHandoff) skipped(st *recvPartition, start int64) {
	st.pending, st.hasPending = kgo.EpochOffset{Epoch: -1, Offset: start}, true
}

func (h *walHandoff) close() error { return h.log.Close() }

// queueHandoff keeps blocks in memory only. The group's offsets are
// committed before a block is handed out (at-most-once) or once the sink
// committed it (at-least-once).
type queueHandoff struct{ r *Receiver }

func (h queueHandoff) store(ctx context.Context, b *block) error {
	if h.r.cfg.Delivery == engine.AtMostOnce && len(b.last) > 0 {
		if err := h.r.commit(ctx, byTopic(b.last)); err != nil {
			return engine.Retryable(err)
		}
	}
	h.r.handOver(b.enc)
	return nil
}

// replay fails: without a log, every record handed out since Open is in
// memory until it is.
func (queueHandoff) replay(seq, n int64) ([]engine.Record, error) {
	return nil, fmt.Errorf("kafka receiver: records %d..%d are neither in memory nor logged", seq, seq+n-1)
}

func (queueHandoff) handedOut(int64, engine.Positions) {}

func (queueHandoff) positions(_ int64, next engine.Positions) engine.Positions {
	return next.Clone()
}

// committed commits the group offsets for at-least-once.
func (h queueHandoff) committed(ctx context.Context, until engine.Positions) (engine.Positions, error) {
	if h.r.cfg.Delivery != engine.AtLeastOnce || len(until) == 0 {
		return until, nil
	}
	offsets := make(map[engine.TopicPartition]kgo.EpochOffset, len(until))
	for tp, off := range until {
		offsets[tp] = kgo.EpochOffset{Epoch: -1, Offset: off}
	}
	return until, h.r.commit(ctx, byTopic(offsets))
}

// skipped owes the group nothing: its offsets move when a batch past the
// loss commits (at-least-once) or its block is stored (at-most-once).
func (queueHandoff) skipped(*recvPartition, int64) {}

func (queueHandoff) close() error { return nil }

// byTopic is offsets in the shape franz-go commits them.
func byTopic(offsets map[engine.TopicPartition]kgo.EpochOffset) map[string]map[int32]kgo.EpochOffset {
	out := map[string]map[int32]kgo.EpochOffset{}
	for tp, eo := range offsets {
		if out[tp.Topic] == nil {
			out[tp.Topic] = map[int32]kgo.EpochOffset{}
		}
		out[tp.Topic][tp.Partition] = eo
	}
	return out
}
