package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/durable"
)

// Idempotent producers. Each batch of an idempotent producer carries its
// producer id, epoch and the sequence number of its first record; the
// partition remembers, per producer id, the epoch and the sequence ranges of
// the producer's last few batches, and checks every new batch against them
// the way Kafka's ProducerStateManager does:
//
//   - an epoch older than the producer's current one is refused
//     (ErrInvalidProducerEpoch: a newer instance took over the id);
//   - a batch whose epoch and first and last sequence equal one of the last
//     ProducerBatchesRetained batches is a retry of a batch already in the
//     log: nothing is written and the caller gets the original offsets, as
//     Kafka answers such a retry (no error, the first append's offset);
//   - otherwise the first sequence must follow the last one (wrapping from
//     math.MaxInt32 to 0), or be 0 under a newer epoch;
//     anything else is ErrOutOfOrderSequence;
//   - an id the partition does not know accepts any sequence, as Kafka does
//     since KIP-360: its state may have expired or its batches may be gone
//     to retention, and refusing would wedge the producer.
//
// The state must survive restarts or a retry that spans one would be written
// twice. It is kept in the log itself (every batch carries the fields) and in
// snapshot files, as Kafka's .snapshot files: "<offset>.snapshot" holds the
// state after every batch before offset. A snapshot is written, fsynced, at
// each segment roll and at clean close. Open loads the newest snapshot not
// past the recovered log end and replays the batch headers after it, so a
// clean restart reads nothing and a crash re-reads only the active segment,
// which recovery reads anyway; a torn tail cut by recovery is simply never
// replayed, so the state always matches the log. Snapshots past the
// recovered end describe batches that are gone and are deleted. With no
// usable snapshot (a log written before snapshots existed, a lost file) the
// whole log's headers are replayed.

// Errors of idempotent appends.
var (
	// ErrOutOfOrderSequence means an idempotent batch does not follow the
	// producer's last batch on this partition (a gap, or a retry of a batch
	// older than the ones remembered).
	ErrOutOfOrderSequence = errors.New("out of order sequence number")
	// ErrInvalidProducerEpoch means a batch carries an older epoch than the
	// producer id's current one on this partition.
	ErrInvalidProducerEpoch = errors.New("invalid producer epoch")
	// ErrInvalidRecord means a batch is well formed but not acceptable from
	// a client: transactional or control batches, bad producer fields, or
	// an idempotent batch sharing a request with other batches.
	ErrInvalidRecord = errors.New("invalid record batch")
)

const (
	// ProducerBatchesRetained is how many of a producer's latest batches
	// each partition remembers for duplicate detection: Kafka's 5, which is
	// also the most produce requests an idempotent client keeps in flight,
	// so every batch a client may retry is among them.
	ProducerBatchesRetained = 5

	// ProducerIDExpiration forgets a producer id that has not written to a
	// partition for this long (Kafka's producer.id.expiration.ms, 1 day), so
	// the state does not grow forever with producers that are gone. It is
	// measured from the broker's clock at append (from the open, for state
	// replayed from the log), not from record timestamps, so a producer
	// writing old timestamps is not forgotten early.
	ProducerIDExpiration = 24 * time.Hour

	// keptSnapshots is how many producer snapshots a partition keeps: the
	// newest, and one older in case the newest is lost or damaged.
	keptSnapshots = 2

	snapshotSuffix = ".snapshot"

	// Batch attribute bits a client may not set on the built-in broker.
	attrTransactional = 0x10
	attrControl       = 0x20
)

// producerBatch is what is remembered of one appended batch.
type producerBatch struct {
	firstSeq, lastSeq int32
	firstOffset       int64
	lastOffsetDelta   int32
}

func (b producerBatch) nextOffset() int64 { return b.firstOffset + int64(b.lastOffsetDelta) + 1 }

// producerEntry is one producer id's state on one partition.
type producerEntry struct {
	epoch    int16
	batches  []producerBatch // oldest first, at most ProducerBatchesRetained; empty after a marker bumped the epoch
	lastSeen int64           // broker time of the last append, Unix ms
	// txnFirst is the offset of the producer's first batch in its open
	// transaction on this partition, -1 when none is open.
	txnFirst int64
}

func (e *producerEntry) lastSeq() int32 { return e.batches[len(e.batches)-1].lastSeq }

func (e *producerEntry) find(firstSeq, lastSeq int32) (producerBatch, bool) {
	for _, b := range e.batches {
		if b.firstSeq == firstSeq && b.lastSeq == lastSeq {
			return b, true
		}
	}
	return producerBatch{}, false
}

// producerStates is the producer state of one partition. It is guarded by
// the partition's mutex; it does no I/O, so tests drive it directly.
type producerStates struct {
	m map[int64]*producerEntry
	// ongoing maps each producer with an open transaction on this
	// partition to the transaction's first offset; the smallest is the
	// first unstable offset.
	ongoing map[int64]int64
}

func newProducerStates() *producerStates {
	return &producerStates{m: map[int64]*producerEntry{}, ongoing: map[int64]int64{}}
}

// firstUnstable is the first offset of the oldest open transaction, or -1.
func (s *producerStates) firstUnstable() int64 {
	first := int64(-1)
	for _, off := range s.ongoing {
		if first < 0 || off < first {
			first = off
		}
	}
	return first
}

// lastSequence is the sequence of a batch's last record. Sequences wrap from
// math.MaxInt32 to 0, as Kafka's do.
func lastSequence(firstSeq, lastOffsetDelta int32) int32 {
	if firstSeq > math.MaxInt32-lastOffsetDelta {
		return lastOffsetDelta - (math.MaxInt32 - firstSeq) - 1
	}
	return firstSeq + lastOffsetDelta
}

// nextSequence is the sequence expected after last.
func nextSequence(last int32) int32 {
	if last == math.MaxInt32 {
		return 0
	}
	return last + 1
}

func inSequence(last, next int32) bool { return next == nextSequence(last) }

// idempotent says the batch comes from an idempotent producer.
func (h header) idempotent() bool { return h.producerID >= 0 }

// transactional says the batch belongs to a transaction.
func (h header) transactional() bool { return h.attributes&attrTransactional != 0 }

// control says the batch is a transaction marker.
func (h header) control() bool { return h.attributes&attrControl != 0 }

// checkClientBatch refuses what a client may not write, whatever its
// producer.
func checkClientBatch(h header) error {
	switch {
	case h.control():
		return fmt.Errorf("%w: control batches are written by the broker, not by clients", ErrInvalidRecord)
	case h.recordCount != h.lastOffsetDelta+1:
		// As Kafka's LogValidator: a producer's batch has no gaps.
		return fmt.Errorf("%w: %d records with last offset delta %d; a producer's batch holds one record per offset", ErrInvalidRecord, h.recordCount, h.lastOffsetDelta)
	case h.transactional() && !h.idempotent():
		return fmt.Errorf("%w: a transactional batch needs a producer id from InitProducerId", ErrInvalidRecord)
	case h.idempotent() && (h.producerEpoch < 0 || h.baseSequence < 0):
		return fmt.Errorf("%w: producer id %d with epoch %d and sequence %d; an idempotent batch needs both non-negative", ErrInvalidRecord, h.producerID, h.producerEpoch, h.baseSequence)
	}
	return nil
}

// check decides what to do with an idempotent client batch: append it
// (nil, false), drop it as a retry of dup (dup, true), or refuse it. It
// changes nothing; add records the batch once it is written.
func (s *producerStates) check(h header) (dup producerBatch, isDup bool, err error) {
	e := s.m[h.producerID]
	if e == nil {
		return producerBatch{}, false, nil
	}
	last := lastSequence(h.baseSequence, h.lastOffsetDelta)
	switch {
	case h.producerEpoch < e.epoch:
		return producerBatch{}, false, fmt.Errorf("%w: producer %d sent epoch %d but epoch %d has written to this partition; the producer was replaced by a newer instance: close it",
			ErrInvalidProducerEpoch, h.producerID, h.producerEpoch, e.epoch)
	case h.producerEpoch > e.epoch:
		if h.baseSequence != 0 {
			return producerBatch{}, false, fmt.Errorf("%w: producer %d's new epoch %d must start at sequence 0, not %d",
				ErrOutOfOrderSequence, h.producerID, h.producerEpoch, h.baseSequence)
		}
		return producerBatch{}, false, nil
	}
	if b, ok := e.find(h.baseSequence, last); ok {
		return b, true, nil
	}
	if len(e.batches) == 0 {
		// Only a marker is known of this epoch here: like an unknown id,
		// any sequence starts it.
		return producerBatch{}, false, nil
	}
	if !inSequence(e.lastSeq(), h.baseSequence) {
		return producerBatch{}, false, fmt.Errorf("%w: producer %d epoch %d sent sequence %d, expected %d (records lost in between, or a retry older than the last %d batches)",
			ErrOutOfOrderSequence, h.producerID, h.producerEpoch, h.baseSequence, nextSequence(e.lastSeq()), ProducerBatchesRetained)
	}
	return producerBatch{}, false, nil
}

// add records a batch written at h.baseOffset. A newer epoch replaces the
// producer's remembered batches. Replay from the log uses it unchecked, as
// Kafka trusts what is already in its log.
func (s *producerStates) add(h header, nowMs int64) {
	e := s.m[h.producerID]
	if e == nil {
		e = &producerEntry{epoch: h.producerEpoch, txnFirst: -1}
		s.m[h.producerID] = e
	}
	if h.transactional() && e.txnFirst < 0 {
		e.txnFirst = h.baseOffset
		s.ongoing[h.producerID] = h.baseOffset
	}
	if h.producerEpoch != e.epoch {
		e.epoch, e.batches = h.producerEpoch, e.batches[:0]
	}
	if len(e.batches) == ProducerBatchesRetained {
		e.batches = append(e.batches[:0], e.batches[1:]...)
	}
	e.batches = append(e.batches, producerBatch{
		firstSeq:        h.baseSequence,
		lastSeq:         lastSequence(h.baseSequence, h.lastOffsetDelta),
		firstOffset:     h.baseOffset,
		lastOffsetDelta: h.lastOffsetDelta,
	})
	e.lastSeen = max(e.lastSeen, nowMs)
}

// marker records a transaction marker of producer id at epoch: it ends
// the producer's open transaction here (returning its first offset, or -1)
// and, under a newer epoch, fences the older one on this partition.
func (s *producerStates) marker(id int64, epoch int16, nowMs int64) int64 {
	e := s.m[id]
	if e == nil {
		e = &producerEntry{epoch: epoch, txnFirst: -1}
		s.m[id] = e
	}
	if epoch > e.epoch {
		e.epoch, e.batches = epoch, e.batches[:0]
	}
	first := e.txnFirst
	e.txnFirst = -1
	delete(s.ongoing, id)
	e.lastSeen = max(e.lastSeen, nowMs)
	return first
}

// expire forgets producers not seen since before cutoff (Unix ms) and
// returns how many. A producer with an open transaction is kept: its
// first offset holds the last stable offset back until the coordinator
// ends it.
func (s *producerStates) expire(cutoffMs int64) int {
	n := 0
	for id, e := range s.m {
		if e.lastSeen < cutoffMs && e.txnFirst < 0 {
			delete(s.m, id)
			n++
		}
	}
	return n
}

func (s *producerStates) maxID() int64 {
	m := int64(-1)
	for id := range s.m {
		m = max(m, id)
	}
	return m
}

// Snapshot file layout, big endian:
//
//	magic "SLPS", version u8, count u32,
//	count × { producer id i64, epoch i16, last seen i64, open txn first offset i64 (v2), n u8,
//	          n × { first seq i32, last seq i32, first offset i64, last offset delta i32 } },
//	CRC-32C (Castagnoli) of everything before it, u32.
//
// Version 1 (before transactions) has no open-transaction offset and at
// least one batch per producer; it is still read.
const (
	snapshotMagic   = "SLPS"
	snapshotVersion = 2
	snapshotHdrLen  = 4 + 1 + 4
	snapshotEntLen  = 8 + 2 + 8 + 8 + 1
	snapshotBatLen  = 4 + 4 + 8 + 4
)

func (s *producerStates) encode() []byte {
	ids := make([]int64, 0, len(s.m))
	for id := range s.m {
		ids = append(ids, id)
	}
	slices.Sort(ids) // deterministic files are easier to compare
	b := make([]byte, 0, snapshotHdrLen+len(ids)*(snapshotEntLen+ProducerBatchesRetained*snapshotBatLen)+4)
	b = append(b, snapshotMagic...)
	b = append(b, snapshotVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		e := s.m[id]
		b = binary.BigEndian.AppendUint64(b, uint64(id))
		b = binary.BigEndian.AppendUint16(b, uint16(e.epoch))
		b = binary.BigEndian.AppendUint64(b, uint64(e.lastSeen))
		b = binary.BigEndian.AppendUint64(b, uint64(e.txnFirst))
		b = append(b, byte(len(e.batches)))
		for _, bt := range e.batches {
			b = binary.BigEndian.AppendUint32(b, uint32(bt.firstSeq))
			b = binary.BigEndian.AppendUint32(b, uint32(bt.lastSeq))
			b = binary.BigEndian.AppendUint64(b, uint64(bt.firstOffset))
			b = binary.BigEndian.AppendUint32(b, uint32(bt.lastOffsetDelta))
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeProducerSnapshot parses a snapshot taken at offset upto; every
// batch it names must lie before upto.
func decodeProducerSnapshot(b []byte, upto int64) (*producerStates, error) {
	if len(b) < snapshotHdrLen+4 {
		return nil, fmt.Errorf("%d bytes is too short for a producer snapshot", len(b))
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, errors.New("producer snapshot checksum mismatch")
	}
	version := body[4]
	if string(body[:4]) != snapshotMagic || version < 1 || version > snapshotVersion {
		return nil, fmt.Errorf("not a version 1 to %d producer snapshot", snapshotVersion)
	}
	entLen := snapshotEntLen
	if version == 1 {
		entLen -= 8
	}
	n := binary.BigEndian.Uint32(body[5:])
	rest := body[snapshotHdrLen:]
	s := newProducerStates()
	for range n {
		if len(rest) < entLen {
			return nil, errors.New("producer snapshot ends inside an entry")
		}
		id := int64(binary.BigEndian.Uint64(rest))
		e := &producerEntry{
			epoch:    int16(binary.BigEndian.Uint16(rest[8:])),
			lastSeen: int64(binary.BigEndian.Uint64(rest[10:])),
			txnFirst: -1,
		}
		if version >= 2 {
			e.txnFirst = int64(binary.BigEndian.Uint64(rest[18:]))
		}
		nb := int(rest[entLen-1])
		rest = rest[entLen:]
		if id < 0 || e.epoch < 0 || (nb == 0 && version == 1) || nb > ProducerBatchesRetained || len(rest) < nb*snapshotBatLen ||
			e.txnFirst < -1 || e.txnFirst >= upto {
			return nil, fmt.Errorf("producer snapshot entry for id %d is invalid", id)
		}
		if _, ok := s.m[id]; ok {
			return nil, fmt.Errorf("producer snapshot names id %d twice", id)
		}
		for range nb {
			bt := producerBatch{
				firstSeq:        int32(binary.BigEndian.Uint32(rest)),
				lastSeq:         int32(binary.BigEndian.Uint32(rest[4:])),
				firstOffset:     int64(binary.BigEndian.Uint64(rest[8:])),
				lastOffsetDelta: int32(binary.BigEndian.Uint32(rest[16:])),
			}
			rest = rest[snapshotBatLen:]
			if bt.firstSeq < 0 || bt.lastOffsetDelta < 0 || bt.lastSeq != lastSequence(bt.firstSeq, bt.lastOffsetDelta) ||
				bt.firstOffset < 0 || bt.firstOffset > upto-1-int64(bt.lastOffsetDelta) {
				return nil, fmt.Errorf("producer snapshot batch of id %d is invalid", id)
			}
			e.batches = append(e.batches, bt)
		}
		s.m[id] = e
		if e.txnFirst >= 0 {
			s.ongoing[id] = e.txnFirst
		}
	}
	if len(rest) != 0 {
		return nil, errors.New("producer snapshot has trailing bytes")
	}
	return s, nil
}

func snapshotName(dir string, offset int64) string { return segmentName(dir, offset, snapshotSuffix) }

// listSnapshots returns the offsets of the producer snapshots in dir, sorted.
func listSnapshots(dir string) ([]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var offs []int64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, snapshotSuffix) {
			continue
		}
		off, err := strconv.ParseInt(strings.TrimSuffix(name, snapshotSuffix), 10, 64)
		if err != nil || off < 0 {
			return nil, fmt.Errorf("unexpected file %s in partition directory %s: move it away", name, dir)
		}
		offs = append(offs, off)
	}
	slices.Sort(offs)
	return offs, nil
}

// writeProducerSnapshot persists the state as of the log end. The caller
// holds p.mu and has made the log durable up to p.end, so the snapshot never
// names a batch a crash could take away. Older snapshots beyond
// keptSnapshots are removed.
func (p *Partition) writeProducerSnapshot() error {
	p.assertWriteLocked()
	if err := writeFileSync(snapshotName(p.dir, p.end), p.producers.encode()); err != nil {
		return fmt.Errorf("write producer snapshot: %w", err)
	}
	offs, err := listSnapshots(p.dir)
	if err != nil {
		return err
	}
	for len(offs) > keptSnapshots {
		if err := os.Remove(snapshotName(p.dir, offs[0])); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		offs = offs[1:]
	}
	// Without it a power cut could leave only older snapshots: still
	// correct, but the next open would replay more of the log.
	return durable.SyncDir(p.dir)
}

// loadProducers rebuilds the producer state at open, after recovery has
// fixed the log end: from the newest usable snapshot, then the batch headers
// after it. The same replay rebuilds the aborted-transaction entries of
// every segment it reads (after an unclean stop the active segment's are
// not on disk), so the snapshot used must not be past a segment whose
// transaction index could not be read.
func (p *Partition) loadProducers(now time.Time) error {
	offs, err := listSnapshots(p.dir)
	if err != nil {
		return err
	}
	start := p.segs[0].base
	from := start
	limit := p.end
	for _, seg := range p.segs {
		if seg.txnIndexBad {
			limit = min(limit, seg.base)
			break
		}
	}
	p.producers = newProducerStates()
	removed := false
	for i := len(offs) - 1; i >= 0; i-- {
		off := offs[i]
		path := snapshotName(p.dir, off)
		if off > p.end {
			// Describes batches the recovery cut off; if kept, it would be
			// taken for the state of whatever is written there next.
			p.cfg.Logger.Warn("removing producer snapshot past the log end", "snapshot", path, "log_end", p.end)
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("remove stale producer snapshot: %w", err)
			}
			removed = true
			continue
		}
		if off > limit {
			continue
		}
		if off < start {
			break // older than the log: replaying from the start is as good
		}
		data, err := os.ReadFile(path)
		if err == nil {
			var s *producerStates
			if s, err = decodeProducerSnapshot(data, off); err == nil {
				p.producers, from = s, off
				break
			}
		}
		p.cfg.Logger.Warn("ignoring unreadable producer snapshot; rebuilding producer state from an older point", "snapshot", path, "err", err)
	}
	if removed {
		if err := durable.SyncDir(p.dir); err != nil {
			return err
		}
	}
	if from < p.end {
		if from == start && p.end-start > 0 {
			p.cfg.Logger.Info("rebuilding idempotent producer state from the log", "dir", p.dir, "from", from, "to", p.end)
		}
		if err := p.replayProducers(from, now.UnixMilli()); err != nil {
			return fmt.Errorf("rebuild producer state of %s: %w", p.dir, err)
		}
	}
	return nil
}

// replayProducers adds the idempotent batches and transaction markers from
// offset from to the log end to the state, reading batch headers (and the
// one record of each marker). The aborted-transaction entries at or after
// from are rebuilt on the way, and the index files of the sealed segments
// concerned rewritten.
func (p *Partition) replayProducers(from, nowMs int64) error {
	for i, seg := range p.segs {
		if seg.next <= from || seg.size == 0 {
			continue
		}
		kept := seg.aborted[:0]
		for _, a := range seg.aborted {
			if a.LastOffset < from {
				kept = append(kept, a)
			}
		}
		seg.aborted = kept
		pos := int64(0)
		for _, e := range seg.index {
			if seg.base+int64(e.rel) > from {
				break
			}
			pos = int64(e.pos)
		}
		for pos < seg.size {
			h, err := seg.readHeader(pos)
			if err != nil {
				return err
			}
			switch {
			case h.baseOffset < from || !h.idempotent():
			case h.control():
				commit, err := seg.readMarker(pos, h)
				if err != nil {
					return err
				}
				p.applyMarker(seg, h.producerID, h.producerEpoch, commit, h.baseOffset, nowMs)
			default:
				p.producers.add(h, nowMs)
			}
			pos += h.size()
		}
		if i < len(p.segs)-1 {
			if err := seg.writeTxnIndex(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Producers is the number of idempotent producer ids the partition tracks.
func (p *Partition) Producers() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.producers.m)
}

// MaxProducerID is the largest producer id the partition tracks, or -1.
// The broker allocates new ids above it, so an id is never handed out twice
// even if its allocation record was lost.
func (p *Partition) MaxProducerID() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.producers.maxID()
}

// ExpireProducers forgets producers that have not appended since
// ProducerIDExpiration before now and returns how many it forgot.
func (p *Partition) ExpireProducers(now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0
	}
	return p.producers.expire(now.Add(-ProducerIDExpiration).UnixMilli())
}
