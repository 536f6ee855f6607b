package storage

import (
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"sync"
)

// This file is what the log does about bytes that changed on disk after
// they were written (ARCHITECTURE §9, "Corruption"): a batch is checked
// (header, offset sequence, CRC-32C) the first time a fetch would serve it,
// and never served if it fails; a sealed segment found damaged at open takes
// its partition offline instead of the broker.

// ErrOffline means the partition's log is damaged and it serves nothing
// until an operator repairs it; the broker answers KAFKA_STORAGE_ERROR.
var ErrOffline = errors.New("partition offline")

// CorruptError is a batch found corrupt on read. It wraps ErrCorrupt, which
// the broker answers with CORRUPT_MESSAGE (as Kafka does for a log read
// that meets an invalid batch).
type CorruptError struct {
	Segment string // the segment file
	Offset  int64  // the batch's first offset (as the offset sequence says)
	Pos     int64  // its position in the file
	Reason  error
	// framed says only the CRC failed: the header is sound, so the batch
	// ends at end and the next one starts at offset next.
	framed    bool
	end, next int64
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("record batch at offset %d (position %d of %s) is corrupt on disk: %v; it is not served: restore the segment from a backup, or consume from a later offset",
		e.Offset, e.Pos, e.Segment, e.Reason)
}

func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// checkedRun is a stretch [from, to) of checked batches; toOff is the
// offset after its last one.
type checkedRun struct{ from, to, toOff int64 }

// maxCheckedRuns bounds the runs a segment remembers: one per consumer
// position reading it at once (a consumer at the head, a few catching
// up), so each reads its bytes checked once. Past it the run furthest
// from the head is forgotten and its bytes are checked again if read.
const maxCheckedRuns = 8

// verifyChunkBytes is what one read call fetches while checking batches: a
// consumer's default max.partition.fetch.bytes, so a typical fetch is
// checked with one pread, and at most this much is held per check (a larger
// batch gets a buffer of its own size, at most maxBatchBytes).
const verifyChunkBytes = 1 << 20

var verifyBufs = sync.Pool{New: func() any { b := make([]byte, verifyChunkBytes); return &b }}

// verified is what a segment knows about its bytes' integrity, guarded by
// the segment's vmu (a leaf lock held only to read or update these fields,
// never during I/O, so checks by concurrent readers do not wait for each
// other's reads).
type verified struct {
	// runs are the stretches of whole batches whose header and CRC were
	// checked, sorted, apart from each other (touching ones are merged).
	// Consumers read forward, so a read usually extends a run; each
	// consumer position reading a segment keeps one, up to maxCheckedRuns.
	runs []checkedRun
	// bad are the batches found corrupt, by position: fetches stop before
	// them without checking them again.
	bad map[int64]*CorruptError
	// logged are the positions of corrupt batches already logged.
	logged map[int64]bool
}

// checkSection makes sure the batches in [start, end) of the segment, the
// first of which starts at offset first, are intact. It returns where the
// intact run from start ends and, if it ends before end, the batch there
// (bad is nil if the check itself failed with an I/O error, err).
func (s *segment) checkSection(start, end, first int64) (goodEnd int64, bad *CorruptError, err error) {
	s.vmu.Lock()
	for pos, c := range s.vd.bad {
		if pos >= start && pos < end {
			end, bad = pos, c
		}
	}
	from, fromOff := start, first
	for _, r := range s.vd.runs {
		if start >= r.from && start < r.to {
			// Inside a checked run: only what lies past it is new.
			from, fromOff = r.to, r.toOff
			break
		}
	}
	s.vmu.Unlock()
	if from >= end {
		return end, bad, nil
	}
	to, toOff, found, err := s.verifyBatches(from, end, fromOff)
	if err != nil {
		return start, nil, err
	}
	s.vmu.Lock()
	defer s.vmu.Unlock()
	s.markVerified(from, to, toOff)
	if found != nil {
		if known, ok := s.vd.bad[found.Pos]; ok {
			return to, known, nil
		}
		if s.vd.bad == nil {
			s.vd.bad = map[int64]*CorruptError{}
		}
		s.vd.bad[found.Pos] = found
		return to, found, nil
	}
	return to, bad, nil
}

// markVerified records that [from, to) was checked; the caller holds vmu
// (or nothing else can see the segment yet). Runs it overlaps or touches
// merge with it.
func (s *segment) markVerified(from, to, toOff int64) {
	if to <= from {
		return
	}
	merged := checkedRun{from, to, toOff}
	runs := make([]checkedRun, 0, len(s.vd.runs)+1)
	for _, r := range s.vd.runs {
		if r.to < merged.from || r.from > merged.to {
			runs = append(runs, r)
			continue
		}
		merged.from = min(merged.from, r.from)
		if r.to > merged.to {
			merged.to, merged.toOff = r.to, r.toOff
		}
	}
	i := 0
	for i < len(runs) && runs[i].from < merged.from {
		i++
	}
	runs = slices.Insert(runs, i, merged)
	if len(runs) > maxCheckedRuns {
		drop := 0 // the lowest: furthest from the head
		if i == 0 {
			drop = 1
		}
		runs = slices.Delete(runs, drop, drop+1)
	}
	s.vd.runs = runs
}

// verifyBatches checks the batches of [from, end), the first starting at
// offset off: each header (magic, lengths, record count), the offset
// sequence and the CRC-32C. It returns where the intact run ends, the
// offset there, and the corrupt batch at that point if it is before end.
func (s *segment) verifyBatches(from, end, off int64) (int64, int64, *CorruptError, error) {
	bp := verifyBufs.Get().(*[]byte)
	defer verifyBufs.Put(bp)
	buf := *bp
	pos := from
	bad := func(reason error) (int64, int64, *CorruptError, error) {
		return pos, off, &CorruptError{Segment: s.path(), Offset: off, Pos: pos, Reason: reason}, nil
	}
	badCRC := func(h header, got uint32) (int64, int64, *CorruptError, error) {
		return pos, off, &CorruptError{Segment: s.path(), Offset: off, Pos: pos,
			Reason: fmt.Errorf("%w: CRC-32C is %08x, header says %08x", ErrCorrupt, got, h.crc),
			framed: true, end: pos + h.size(), next: h.nextOffset()}, nil
	}
	for pos < end {
		n := min(int64(len(buf)), end-pos)
		if n < batchHeaderLen {
			return bad(fmt.Errorf("%d bytes left before the end, shorter than a batch header", n))
		}
		chunk := buf[:n]
		if _, err := s.f.ReadAt(chunk, pos); err != nil {
			return pos, off, nil, fmt.Errorf("read %s at %d: %w", s.path(), pos, err)
		}
		for len(chunk) >= batchHeaderLen {
			h := parseHeader(chunk)
			if !s.follows(h.baseOffset, off) {
				return bad(fmt.Errorf("base offset %d where %d was expected", h.baseOffset, off))
			}
			if err := checkHeader(h, end-pos); err != nil {
				return bad(err)
			}
			if h.size() > int64(len(chunk)) {
				if h.size() <= int64(len(buf)) {
					break // read again from this batch
				}
				// Larger than the chunk: checked in pieces.
				sum, err := s.crcOf(pos, h)
				if err != nil {
					return pos, off, nil, err
				}
				if sum != h.crc {
					return badCRC(h, sum)
				}
				pos, off = pos+h.size(), h.nextOffset()
				chunk = nil
				break
			}
			if got := crc32.Checksum(chunk[21:h.size()], castagnoli); got != h.crc {
				return badCRC(h, got)
			}
			chunk = chunk[h.size():]
			pos, off = pos+h.size(), h.nextOffset()
		}
	}
	return pos, off, nil, nil
}

// crcOf computes the CRC-32C of the batch at pos, reading it in chunks.
func (s *segment) crcOf(pos int64, h header) (uint32, error) {
	bp := verifyBufs.Get().(*[]byte)
	defer verifyBufs.Put(bp)
	buf := *bp
	var sum uint32
	for at, end := pos+21, pos+h.size(); at < end; {
		n := min(int64(len(buf)), end-at)
		if _, err := s.f.ReadAt(buf[:n], at); err != nil {
			return 0, fmt.Errorf("read %s at %d: %w", s.path(), at, err)
		}
		sum = crc32.Update(sum, castagnoli, buf[:n])
		at += n
	}
	return sum, nil
}

func (s *segment) path() string { return segmentName(s.dir, s.base, logSuffix) }

// readChecked is read with every batch of the section checked before it is
// handed out: the section stops before the first corrupt batch, and a read
// that starts at one fails with a *CorruptError.
func (p *Partition) readChecked(seg *segment, offset, maxBytes, size int64, index []indexEntry, next, upto int64) (Section, error) {
	sec, first, err := seg.read(offset, maxBytes, size, index, next, upto)
	if err != nil {
		var ce *CorruptError
		if errors.As(err, &ce) {
			p.reportCorrupt(seg, ce)
		}
		return Section{}, err
	}
	if sec.Len == 0 {
		return sec, nil
	}
	goodEnd, bad, err := seg.checkSection(sec.Pos, sec.Pos+sec.Len, first)
	if err != nil {
		return Section{}, err
	}
	if bad == nil {
		return sec, nil
	}
	p.reportCorrupt(seg, bad)
	if goodEnd == sec.Pos {
		return Section{}, bad
	}
	sec.Len, sec.Next = goodEnd-sec.Pos, bad.Offset
	return sec, nil
}

// reportCorrupt logs and counts a corrupt batch the first time a read meets
// it: later fetches at its offset answer the error without a log line, so
// a consumer retrying cannot flood the log.
func (p *Partition) reportCorrupt(seg *segment, ce *CorruptError) {
	seg.vmu.Lock()
	if seg.vd.logged == nil {
		seg.vd.logged = map[int64]bool{}
	}
	first := !seg.vd.logged[ce.Pos]
	seg.vd.logged[ce.Pos] = true
	seg.vmu.Unlock()
	if !first {
		return
	}
	p.corruptFound.Add(1)
	p.mu.RLock()
	log, name := p.cfg.Logger, p.name()
	p.mu.RUnlock()
	log.Error("corrupt record batch in partition log: fetches stop before it and answer CORRUPT_MESSAGE at its offset",
		"partition", name, "offset", ce.Offset, "file", ce.Segment, "position", ce.Pos, "err", ce.Reason)
}

// CorruptBatches is the number of distinct corrupt batches reads have met
// since the partition was opened.
func (p *Partition) CorruptBatches() int64 { return p.corruptFound.Load() }

// Offline returns why the partition is offline (wrapping ErrOffline), or
// nil if it is online.
func (p *Partition) Offline() error { return p.offline }

// name is how logs name the partition: Config.Name, else its directory.
func (p *Partition) name() string {
	if p.cfg.Name != "" {
		return p.cfg.Name
	}
	return p.dir
}

// closedErr is what calls on a closed partition return: ErrOffline's
// reason for an offline one.
func (p *Partition) closedErr() error {
	if p.offline != nil {
		return p.offline
	}
	return ErrClosed
}

// DamagedError is a sealed segment found damaged at open.
type DamagedError struct {
	Segment string // the file
	Offset  int64  // the first offset the damage hides
	Pos     int64  // where in the file it starts
	Reason  error
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("segment %s is damaged at offset %d (position %d): %v", e.Segment, e.Offset, e.Pos, e.Reason)
}

// offlinePartition is the partition in dir whose log could not be opened
// because of damage: closed from the start, it answers every call with
// the damage (or zero values), and holds no file open. One empty
// placeholder segment keeps the methods that read segs[0] working.
func offlinePartition(dir string, cfg Config, damage *DamagedError) *Partition {
	p := &Partition{dir: dir, cfg: cfg, closed: true, producers: newProducerStates()}
	p.offline = fmt.Errorf("%w: %v; the rest of the broker is serving. To bring it back, restore %s from a backup, or accept losing offsets up to the next segment's: delete %s and every older segment of %s, then restart",
		ErrOffline, damage, damage.Segment, damage.Segment, dir)
	placeholder := &segment{base: 0, dir: dir, maxTs: -1}
	placeholder.refs.Store(1)
	p.segs = []*segment{placeholder}
	return p
}
