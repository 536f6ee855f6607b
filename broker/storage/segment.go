package storage

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// File name suffixes of a segment, named by its base offset as in Kafka.
const (
	logSuffix       = ".log"
	indexSuffix     = ".index"
	timeIndexSuffix = ".timeindex"
)

// indexEntry is one sparse index point: the batch starting at rel (offset
// relative to the segment base) sits at pos, and every batch before it has a
// max timestamp ≤ tsBefore. tsBefore lets a timestamp lookup skip straight to
// the first entry that may hold a later record.
type indexEntry struct {
	rel      uint32
	pos      uint32
	tsBefore int64
}

// segment is one file of a partition log.
//
// Locking (see Partition for the whole picture): base, dir and f never
// change after creation and are read without a lock; refs is atomic. Every
// other field is guarded by the partition's mu. Index entries are never
// changed once appended, so a reader may keep the slice it copied under mu.
// The file is written (Write, and Truncate and Seek to undo a failed write)
// only under the partition's mu held for writing, and read with ReadAt by
// anyone holding a reference.
//
// References: the partition holds one while the segment is in its segs and
// it is open; each Section handed out, and each read or fsync running
// outside mu, holds one more. The last release closes the file, so a
// reader never sees it closed under it, even after retention or Close.
type segment struct {
	base       int64
	dir        string
	f          *os.File
	size       int64 // bytes of whole batches
	next       int64 // offset after the last batch
	index      []indexEntry
	sinceIndex int64 // bytes appended since the last index entry
	maxTs      int64 // largest batch max timestamp, -1 if empty
	created    time.Time
	refs       atomic.Int32
	// aborted are the transactions aborted by a marker in this segment,
	// in offset order (see txns.go).
	aborted []AbortedTxn
	// txnIndexBad says the .txnindex file could not be read; the open
	// rebuilds it from the log.
	txnIndexBad bool
	// gaps says the cleaner wrote this segment (clean.go): its batches
	// keep their offsets, so they may skip some, and it may end before the
	// next segment's base. Set at creation, never changed.
	gaps bool
	// vmu guards vd, what reads learnt of the bytes' integrity (corrupt.go).
	vmu sync.Mutex
	vd  verified
}

// follows says a batch starting at base may come where offset want is
// next: exactly there, or past it in a cleaned segment.
func (s *segment) follows(base, want int64) bool {
	return base == want || (s.gaps && base > want)
}

// endsAt says a segment whose batches end at off fits before a next segment
// starting at next (-1: none known).
func (s *segment) endsAt(off, next int64) bool {
	return next < 0 || off == next || (s.gaps && off < next)
}

func segmentName(dir string, base int64, suffix string) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", base, suffix))
}

func (s *segment) acquire() { s.refs.Add(1) }

// release drops one reference; the last one closes the file, which may
// already be unlinked by retention.
func (s *segment) release() {
	if s.refs.Add(-1) == 0 {
		s.f.Close()
	}
}

// listSegments returns the base offsets of the segment files in dir, sorted.
func listSegments(dir string) ([]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var bases []int64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, logSuffix) {
			continue
		}
		base, err := strconv.ParseInt(strings.TrimSuffix(name, logSuffix), 10, 64)
		if err != nil || base < 0 {
			return nil, fmt.Errorf("unexpected file %s in partition directory %s: move it away", name, dir)
		}
		bases = append(bases, base)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	return bases, nil
}

// addIndex records an index point for a batch about to be placed at pos.
func (s *segment) maybeIndex(h header, pos int64, indexInterval int64) {
	if len(s.index) == 0 || s.sinceIndex >= indexInterval {
		s.index = append(s.index, indexEntry{rel: uint32(h.baseOffset - s.base), pos: uint32(pos), tsBefore: s.maxTs})
		s.sinceIndex = 0
	}
	s.sinceIndex += h.size()
	s.maxTs = max(s.maxTs, h.maxTimestamp)
	s.next = h.nextOffset()
}

// scan reads the batches of the segment file from position 0 and rebuilds
// the in-memory index, size, next offset and max timestamp, checking every
// batch's CRC-32C. It stops at the first batch that is torn, corrupt or out
// of sequence and returns the position of that stop: the file holds valid
// data only before it. With keep, a batch whose CRC alone fails (its header
// is sound) is handed to keep and the scan goes on after it.
func (s *segment) scan(fileSize int64, keep func(*CorruptError), indexInterval int64) (validEnd int64, reason error, err error) {
	s.index, s.sinceIndex, s.maxTs, s.next, s.size = nil, 0, -1, s.base, 0
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, 0, 1<<62), recoveryReadBytes)
	var hdr [batchHeaderLen]byte
	var body []byte
	pos := int64(0)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				return pos, nil, nil
			}
			if err == io.ErrUnexpectedEOF {
				return pos, fmt.Errorf("torn batch header at position %d", pos), nil
			}
			return pos, nil, err
		}
		h := parseHeader(hdr[:])
		if h.length < batchHeaderLen-batchLengthOverhead || h.size() > maxBatchBytes {
			return pos, fmt.Errorf("bad batch length %d at position %d", h.length, pos), nil
		}
		if pos+h.size() > fileSize {
			// Checked before reading the body, so a torn length field
			// cannot make us allocate its size.
			return pos, fmt.Errorf("torn batch at position %d", pos), nil
		}
		if !s.follows(h.baseOffset, s.next) {
			return pos, fmt.Errorf("batch at position %d has base offset %d, expected %d", pos, h.baseOffset, s.next), nil
		}
		if cap(body) < int(h.size()) {
			body = make([]byte, h.size())
		}
		body = body[:h.size()]
		copy(body, hdr[:])
		if _, err := io.ReadFull(r, body[batchHeaderLen:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return pos, fmt.Errorf("torn batch at position %d", pos), nil
			}
			return pos, nil, err
		}
		if _, cerr := checkBatch(body, true); cerr != nil {
			if keep == nil || checkHeader(h, h.size()) != nil {
				return pos, fmt.Errorf("batch at position %d: %w", pos, cerr), nil
			}
			keep(&CorruptError{Segment: s.path(), Offset: h.baseOffset, Pos: pos, Reason: cerr,
				framed: true, end: pos + h.size(), next: h.nextOffset()})
		}
		s.maybeIndex(h, pos, indexInterval)
		pos += h.size()
		s.size = pos
	}
}

// writeIndexFiles persists the sparse indexes of a sealed segment, each
// through a temporary file, fsync and rename so a crash leaves the old or new
// file whole. A missing or inconsistent index is rebuilt on open.
func (s *segment) writeIndexFiles() error { return s.writeIndexFilesAs("") }

// writeIndexFilesAs is writeIndexFiles to the names ending in tail too
// (the cleaner's cleanedSuffix).
func (s *segment) writeIndexFilesAs(tail string) error {
	idx := make([]byte, 0, len(s.index)*8)
	tidx := make([]byte, 0, len(s.index)*12)
	for _, e := range s.index {
		idx = binary.BigEndian.AppendUint32(idx, e.rel)
		idx = binary.BigEndian.AppendUint32(idx, e.pos)
		tidx = binary.BigEndian.AppendUint64(tidx, uint64(e.tsBefore))
		tidx = binary.BigEndian.AppendUint32(tidx, e.rel)
	}
	for _, f := range []struct {
		suffix string
		data   []byte
	}{{indexSuffix, idx}, {timeIndexSuffix, tidx}} {
		if err := writeFileSync(segmentName(s.dir, s.base, f.suffix)+tail, f.data); err != nil {
			return err
		}
	}
	return nil
}

// loadIndexFiles restores the index of a sealed segment from its files and
// checks them against the log: entries increasing, inside the file, and the
// batches after the last entry ending exactly at the file's end. It reports
// false when the segment must be scanned instead.
func (s *segment) loadIndexFiles(fileSize, next int64, indexInterval int64) bool {
	idx, err1 := os.ReadFile(segmentName(s.dir, s.base, indexSuffix))
	tidx, err2 := os.ReadFile(segmentName(s.dir, s.base, timeIndexSuffix))
	if err1 != nil || err2 != nil || len(idx)%8 != 0 || len(tidx)%12 != 0 || len(idx)/8 != len(tidx)/12 || len(idx) == 0 {
		return false
	}
	n := len(idx) / 8
	entries := make([]indexEntry, n)
	for i := range entries {
		e := indexEntry{
			rel:      binary.BigEndian.Uint32(idx[i*8:]),
			pos:      binary.BigEndian.Uint32(idx[i*8+4:]),
			tsBefore: int64(binary.BigEndian.Uint64(tidx[i*12:])),
		}
		if binary.BigEndian.Uint32(tidx[i*12+8:]) != e.rel || int64(e.pos) >= fileSize {
			return false
		}
		if i > 0 && (e.rel <= entries[i-1].rel || e.pos <= entries[i-1].pos) {
			return false
		}
		entries[i] = e
	}
	if entries[0].pos != 0 || (entries[0].rel != 0 && !s.gaps) {
		return false
	}
	// Walk the tail after the last entry to learn the max timestamp and to
	// check the index describes this file.
	last := entries[n-1]
	maxTs := last.tsBefore
	pos := int64(last.pos)
	off := s.base + int64(last.rel)
	var hdr [batchHeaderLen]byte
	for pos < fileSize {
		if _, err := s.f.ReadAt(hdr[:], pos); err != nil {
			return false
		}
		h := parseHeader(hdr[:])
		if !s.follows(h.baseOffset, off) || h.length < batchHeaderLen-batchLengthOverhead {
			return false
		}
		maxTs = max(maxTs, h.maxTimestamp)
		off = h.nextOffset()
		pos += h.size()
		s.sinceIndex += h.size()
	}
	if pos != fileSize || !s.endsAt(off, next) {
		return false
	}
	s.index, s.size, s.next, s.maxTs = entries, fileSize, off, maxTs
	return true
}

// writeFileSync replaces path with data through a temporary file, fsync and
// rename, without fsyncing the directory: callers write several files and
// then fsync the directory once (durable.SyncDir).
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (s *segment) readHeader(pos int64) (header, error) {
	var hdr [batchHeaderLen]byte
	if _, err := s.f.ReadAt(hdr[:], pos); err != nil {
		return header{}, fmt.Errorf("read batch header at %d: %w", pos, err)
	}
	return parseHeader(hdr[:]), nil
}

// walkHeader reads the header of the batch at pos, which the offset
// sequence says starts at offset want, and checks it enough to step over
// it: magic, lengths inside the segment's size, record count, base offset.
func (s *segment) walkHeader(pos, size, want int64) (header, error) {
	h, err := s.readHeader(pos)
	if err != nil {
		return h, err
	}
	var reason error
	if !s.follows(h.baseOffset, want) {
		reason = fmt.Errorf("base offset %d where %d was expected", h.baseOffset, want)
	} else {
		reason = checkHeader(h, size-pos)
	}
	if reason != nil {
		return h, &CorruptError{Segment: s.path(), Offset: want, Pos: pos, Reason: reason}
	}
	return h, nil
}

// read finds offset in the segment using a snapshot (size, index, next)
// taken under the partition lock, stopping before the batch at upto unless
// it is -1. It returns the section and the offset its first batch starts
// at. Every header it steps over is checked (walkHeader): a damaged one
// before offset fails the read with a *CorruptError, one after the first
// batch ends the section before it, so the next read meets it. Batch
// contents are checked by the caller (readChecked).
func (s *segment) read(offset, maxBytes, size int64, index []indexEntry, next, upto int64) (Section, int64, error) {
	rel := offset - s.base
	j := sort.Search(len(index), func(j int) bool { return int64(index[j].rel) > rel }) - 1
	pos, want := int64(0), s.base
	if j >= 0 {
		pos, want = int64(index[j].pos), s.base+int64(index[j].rel)
	}
	var first header
	for {
		if pos >= size {
			return Section{}, 0, nil
		}
		h, err := s.walkHeader(pos, size, want)
		if err != nil {
			return Section{}, 0, err
		}
		if h.nextOffset() > offset {
			first = h
			break
		}
		pos, want = pos+h.size(), h.nextOffset()
	}
	if upto >= 0 && first.baseOffset >= upto {
		return Section{}, 0, nil
	}
	// end is where the section stops and endOff the offset starting there.
	start, end, endOff := pos, pos+first.size(), first.nextOffset()
	limit := start + maxBytes
	if size <= limit {
		end, endOff = size, next
	} else {
		// Jump with the index to the last indexed batch that still fits,
		// then walk batch headers up to the limit.
		k := sort.Search(len(index), func(k int) bool { return int64(index[k].pos) > limit }) - 1
		if k >= 0 && int64(index[k].pos) > end {
			end, endOff = int64(index[k].pos), s.base+int64(index[k].rel)
		}
		for end < size {
			h, err := s.walkHeader(end, size, endOff)
			if err != nil || end+h.size() > limit {
				break
			}
			end, endOff = end+h.size(), h.nextOffset()
		}
	}
	if upto >= 0 {
		// Find the first batch at or past upto in the chosen range,
		// walking from the last indexed batch before it.
		pos, off := start+first.size(), first.nextOffset()
		k := sort.Search(len(index), func(k int) bool { return s.base+int64(index[k].rel) >= upto }) - 1
		if k >= 0 && int64(index[k].pos) > pos {
			pos, off = int64(index[k].pos), s.base+int64(index[k].rel)
		}
		for pos < end {
			h, err := s.walkHeader(pos, size, off)
			if err != nil || h.baseOffset >= upto {
				end, endOff = pos, off
				break
			}
			pos, off = pos+h.size(), h.nextOffset()
		}
	}
	return Section{File: s.f, Pos: start, Len: end - start, Next: endOff}, first.baseOffset, nil
}
