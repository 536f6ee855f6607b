// Package wal is the receiver's write-ahead log: records appended in
// blocks, each block fsynced before Append returns, numbered by a sequence
// that only grows, read back from any retained sequence and trimmed from
// the front once a sink has committed past it.
//
// A Block is encoded once: its buffers are what AppendBlock writes, and
// the records it decodes from them are what the receiver hands out while
// the block is in memory, so a record is not read back from the files
// unless a restart replays it. Both paths decode with the same code and
// return equal records; neither allocates per record (keys and values
// point into the block's or the read's buffers).
//
// A segment file holds entries of [length u32][CRC-32C u32][record]; its
// name is the sequence of its first entry. A crash can leave a torn entry
// at the end of the last segment; Open cuts it off. Only whole segments
// are trimmed, so a segment's first sequence never changes.
package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/durable"
)

const (
	// SegmentBytes is the size at which a new segment starts; trimming
	// frees space in steps of this size.
	SegmentBytes = 64 << 20
	// maxEntryBytes caps one entry when reading; a larger length is a torn
	// or corrupt tail.
	maxEntryBytes = 128 << 20
	// indexEvery is the spacing of the index that Open builds for the
	// segments it finds, so memory stays small whatever the backlog on
	// disk. Appended blocks add their own, denser, index points, which cost
	// 16 bytes per blockIndexEvery entries.
	indexEvery = 1024
	// readSlabBytes is the most a read takes from a segment file at once.
	// The records a read returns point into its slabs (no copy or
	// allocation per record), so a slab stays in memory as long as any of
	// its records does; reads size slabs to what they need from the
	// segment's average entry size, up to this.
	readSlabBytes = 4 << 20
	suffix        = ".wal"
)

// ErrTrimmed means a read asked for a sequence that was trimmed already.
var ErrTrimmed = errors.New("wal: sequence already trimmed")

// indexPoint says where in its segment file the entry with sequence seq
// starts.
type indexPoint struct {
	seq, pos int64
}

type segment struct {
	first int64 // sequence of the first entry
	n     int64 // entries in it
	size  int64 // bytes
	index []indexPoint
	path  string
}

// locate returns the index point at or before seq.
func (s *segment) locate(seq int64) indexPoint {
	i := sort.Search(len(s.index), func(i int) bool { return s.index[i].seq > seq })
	return s.index[i-1]
}

// WAL is a write-ahead log in one directory. It is safe for one appender
// and concurrent readers.
type WAL struct {
	mu           sync.Mutex
	dir          string
	segs         []*segment
	f            *os.File         // the last segment, open for appending
	maxOffsets   engine.Positions // highest Kafka offset per partition retained
	segmentBytes int64
}

// Open opens or creates the log in dir, cutting off a torn tail.
func Open(dir string) (*WAL, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	names, err := filepath.Glob(filepath.Join(dir, "*"+suffix))
	if err != nil {
		return nil, err
	}
	w := &WAL{dir: dir, maxOffsets: engine.Positions{}, segmentBytes: SegmentBytes}
	for _, name := range names {
		first, err := strconv.ParseInt(strings.TrimSuffix(filepath.Base(name), suffix), 10, 64)
		if err != nil {
			continue // not ours
		}
		w.segs = append(w.segs, &segment{first: first, path: name})
	}
	sort.Slice(w.segs, func(i, j int) bool { return w.segs[i].first < w.segs[j].first })
	for i, s := range w.segs {
		last := i == len(w.segs)-1
		if err := w.scan(s, last); err != nil {
			return nil, err
		}
		if !last && s.first+s.n != w.segs[i+1].first {
			return nil, fmt.Errorf("wal %s: segment %s ends at %d but the next starts at %d; the log is damaged",
				dir, filepath.Base(s.path), s.first+s.n, w.segs[i+1].first)
		}
	}
	if len(w.segs) == 0 {
		if err := w.roll(0); err != nil {
			return nil, err
		}
	} else {
		s := w.segs[len(w.segs)-1]
		f, err := os.OpenFile(s.path, os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		if _, err := f.Seek(s.size, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		w.f = f
	}
	return w, nil
}

// scan indexes a segment and, for the last one, truncates a torn tail.
func (w *WAL) scan(s *segment, last bool) error {
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	er := entryReader{f: f, pos: 0, end: st.Size(), slab: readSlabBytes}
	var d decoder
	var rec engine.Record
	for {
		at := er.pos
		body, err := er.next()
		if err != nil {
			if err == io.EOF || errors.Is(err, errCorrupt) {
				break
			}
			return fmt.Errorf("wal %s: %w", s.path, err)
		}
		if crc32.Checksum(body, castagnoli) != er.crc || d.decode(body, &rec) != nil {
			break
		}
		if s.n%indexEvery == 0 {
			s.index = append(s.index, indexPoint{seq: s.first + s.n, pos: at})
		}
		tp := engine.TopicPartition{Topic: rec.Topic, Partition: rec.Partition}
		if cur, ok := w.maxOffsets[tp]; !ok || rec.Offset > cur {
			w.maxOffsets[tp] = rec.Offset
		}
		s.n++
		s.size = er.pos
	}
	if st.Size() != s.size {
		if !last {
			return fmt.Errorf("wal %s: segment %s is damaged at byte %d and is not the last one", w.dir, filepath.Base(s.path), s.size)
		}
		if err := os.Truncate(s.path, s.size); err != nil {
			return fmt.Errorf("wal: cut torn tail of %s: %w", s.path, err)
		}
	}
	return nil
}

func (w *WAL) roll(first int64) error {
	if w.f != nil {
		if err := w.f.Close(); err != nil {
			return err
		}
	}
	path := filepath.Join(w.dir, fmt.Sprintf("%020d%s", first, suffix))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	w.f = f
	w.segs = append(w.segs, &segment{first: first, path: path})
	return durable.SyncDir(w.dir)
}

// Append writes recs and fsyncs them; it returns the sequence after the
// last one. On error nothing of recs may be relied on, and the log must be
// reopened.
func (w *WAL) Append(recs []engine.Record) (int64, error) {
	size := 0
	for i := range recs {
		size += EncodedSize(&recs[i])
	}
	var b Block
	b.Grow(size)
	for i := range recs {
		b.Add(&recs[i])
	}
	return w.AppendBlock(&b)
}

// AppendBlock writes b's entries and fsyncs them; it returns the sequence
// after the last one, so b's entries are the sequences end-b.Len() to
// end-1. b must not be added to afterwards. On error nothing of b may be
// relied on, and the log must be reopened.
func (w *WAL) AppendBlock(b *Block) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.segs[len(w.segs)-1]
	if b.n == 0 {
		return s.first + s.n, nil
	}
	if s.size >= w.segmentBytes {
		if err := w.roll(s.first + s.n); err != nil {
			return 0, err
		}
		s = w.segs[len(w.segs)-1]
	}
	chunkAt := make([]int64, len(b.chunks)) // file position of each chunk
	at := s.size
	for i, c := range b.chunks {
		if _, err := w.f.Write(c); err != nil {
			return 0, err
		}
		chunkAt[i] = at
		at += int64(len(c))
	}
	if err := w.f.Sync(); err != nil {
		return 0, err
	}
	for i, ref := range b.index {
		s.index = append(s.index, indexPoint{seq: s.first + s.n + int64(i*blockIndexEvery), pos: chunkAt[ref.chunk] + int64(ref.pos)})
	}
	s.n += int64(b.n)
	s.size = at
	for tp, off := range b.MaxOffsets() {
		if cur, ok := w.maxOffsets[tp]; !ok || off > cur {
			w.maxOffsets[tp] = off
		}
	}
	return s.first + s.n, nil
}

// Bounds returns the first retained sequence and the sequence after the
// last one.
func (w *WAL) Bounds() (start, end int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	last := w.segs[len(w.segs)-1]
	return w.segs[0].first, last.first + last.n
}

// MaxOffsets returns the highest Kafka offset per partition among the
// retained entries: after a crash between a block's fsync and its group
// commit, the receiver skips what the log already holds.
func (w *WAL) MaxOffsets() engine.Positions {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxOffsets.Clone()
}

// Read returns up to limit records (0 = no limit) starting at sequence from.
// Their keys, values and header values point into buffers that belong to
// them (nothing is shared with the log or with other reads).
func (w *WAL) Read(from int64, limit int) ([]engine.Record, error) {
	w.mu.Lock()
	var segs []segment
	for _, s := range w.segs {
		if s.first+s.n > from {
			segs = append(segs, *s)
		}
	}
	start := w.segs[0].first
	w.mu.Unlock()
	if from < start {
		return nil, fmt.Errorf("%w: %d < %d", ErrTrimmed, from, start)
	}
	want := int64(0)
	for _, s := range segs {
		want += s.n - max(from-s.first, 0)
	}
	if limit > 0 {
		want = min(want, int64(limit))
	}
	out := make([]engine.Record, 0, want)
	for _, s := range segs {
		if from < s.first {
			from = s.first
		}
		want := s.n - (from - s.first)
		if limit > 0 {
			want = min(want, int64(limit-len(out)))
		}
		n := len(out)
		var err error
		if out, err = readSegment(out, &s, from, int(want)); err != nil {
			return nil, err
		}
		from += int64(len(out) - n)
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out, nil
}

// readSegment appends the n records of s from sequence from to dst.
func readSegment(dst []engine.Record, s *segment, from int64, n int) ([]engine.Record, error) {
	if n <= 0 {
		return dst, nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		return dst, err
	}
	defer f.Close()
	at := s.locate(from)
	skip := from - at.seq
	// Slabs sized by the segment's average entry, so that a short read
	// does not keep megabytes alive through its records.
	avg := s.size/max(s.n, 1) + 1
	er := entryReader{f: f, pos: at.pos, end: s.size, slab: min(int64(readSlabBytes), (skip+int64(n)+1)*avg)}
	var d decoder
	seq := at.seq
	for want := len(dst) + n; len(dst) < want; seq++ {
		body, err := er.next()
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return dst, fmt.Errorf("wal %s at sequence %d: %w", s.path, seq, err)
		}
		if seq < from {
			continue
		}
		if crc32.Checksum(body, castagnoli) != er.crc {
			return dst, fmt.Errorf("wal %s: checksum mismatch at sequence %d", s.path, seq)
		}
		dst = append(dst, engine.Record{})
		if err := d.decode(body, &dst[len(dst)-1]); err != nil {
			return dst[:len(dst)-1], fmt.Errorf("wal %s at sequence %d: %w", s.path, seq, err)
		}
	}
	return dst, nil
}

// entryReader reads the entries of a segment file from pos to end in slabs:
// one read per slab, no allocation per entry, and each body returned is a
// slice of a slab that is never reused.
type entryReader struct {
	f        io.ReaderAt
	pos, end int64  // file position of the next entry; where the entries end
	slab     int64  // size of the next slab
	buf      []byte // the current slab; buf[off:] is unread
	off      int
	crc      uint32 // checksum in the header of the entry next returned
}

// next returns the body of the next entry; io.EOF at end, errCorrupt for an
// entry whose length is impossible (a torn or damaged tail). Checksums are
// left to the caller (er.crc).
func (er *entryReader) next() ([]byte, error) {
	if er.pos >= er.end {
		return nil, io.EOF
	}
	if err := er.fill(headerBytes); err != nil {
		return nil, err
	}
	size := int64(binary.BigEndian.Uint32(er.buf[er.off:]))
	if size > maxEntryBytes || er.pos+headerBytes+size > er.end {
		return nil, errCorrupt
	}
	if err := er.fill(headerBytes + int(size)); err != nil {
		return nil, err
	}
	er.crc = binary.BigEndian.Uint32(er.buf[er.off+4:])
	body := er.buf[er.off+headerBytes : er.off+headerBytes+int(size) : er.off+headerBytes+int(size)]
	er.off += headerBytes + int(size)
	er.pos += headerBytes + size
	return body, nil
}

// fill makes sure n unread bytes are in the slab, moving to a new slab
// (with the unread rest copied to its start) when they are not.
func (er *entryReader) fill(n int) error {
	have := len(er.buf) - er.off
	if have >= n {
		return nil
	}
	size := max(int64(n), er.slab)
	size = min(size, er.end-er.pos)
	if size < int64(n) {
		return errCorrupt
	}
	slab := make([]byte, size)
	copy(slab, er.buf[er.off:])
	if _, err := er.f.ReadAt(slab[have:], er.pos+int64(have)); err != nil {
		if err == io.EOF {
			return errCorrupt
		}
		return err
	}
	er.buf, er.off = slab, 0
	// Later slabs of a long read are full size.
	er.slab = readSlabBytes
	return nil
}

// Trim deletes the segments whose every entry is below seq.
func (w *WAL) Trim(seq int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	removed := false
	for len(w.segs) > 1 && w.segs[0].first+w.segs[0].n <= seq {
		if err := os.Remove(w.segs[0].path); err != nil {
			return err
		}
		w.segs = w.segs[1:]
		removed = true
	}
	if removed {
		// Offsets of trimmed entries were group-committed before the
		// entries became readable, so they are no longer needed here;
		// recompute from what is left on the next Open.
		return durable.SyncDir(w.dir)
	}
	return nil
}

// Close closes the log.
func (w *WAL) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.Close()
}
