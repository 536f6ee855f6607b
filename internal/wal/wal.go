// Package wal is the receiver's write-ahead log: records appended in
// blocks, each block fsynced before Append returns, numbered by a sequence
// that only grows, read back from any retained sequence and trimmed from
// the front once a sink has committed past it.
//
// A segment file holds entries of [length u32][CRC-32C u32][record]; its
// name is the sequence of its first entry. A crash can leave a torn entry
// at the end of the last segment; Open cuts it off. Only whole segments
// are trimmed, so a segment's first sequence never changes.
package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

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
	// indexEvery is the spacing of the in-memory sparse index, so memory
	// stays small whatever the backlog on disk.
	indexEvery  = 1024
	headerBytes = 8
	suffix      = ".wal"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrTrimmed means a read asked for a sequence that was trimmed already.
var ErrTrimmed = errors.New("wal: sequence already trimmed")

type segment struct {
	first int64   // sequence of the first entry
	n     int64   // entries in it
	size  int64   // bytes
	index []int64 // file position of entries first, first+indexEvery, ...
	path  string
}

// WAL is a write-ahead log in one directory. It is safe for one appender
// and concurrent readers.
type WAL struct {
	mu           sync.Mutex
	dir          string
	segs         []*segment
	f            *os.File // the last segment, open for appending
	buf          []byte
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
	r := bufio.NewReaderSize(f, 1<<20)
	var pos int64
	var hdr [headerBytes]byte
	body := make([]byte, 0, 4096)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			break
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n > maxEntryBytes {
			break
		}
		body = append(body[:0], make([]byte, n)...)
		if _, err := io.ReadFull(r, body); err != nil {
			break
		}
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
			break
		}
		rec, err := decode(body)
		if err != nil {
			break
		}
		if s.n%indexEvery == 0 {
			s.index = append(s.index, pos)
		}
		w.noteOffset(rec)
		s.n++
		pos += headerBytes + int64(n)
	}
	s.size = pos
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != pos {
		if !last {
			return fmt.Errorf("wal %s: segment %s is damaged at byte %d and is not the last one", w.dir, filepath.Base(s.path), pos)
		}
		if err := os.Truncate(s.path, pos); err != nil {
			return fmt.Errorf("wal: cut torn tail of %s: %w", s.path, err)
		}
	}
	return nil
}

func (w *WAL) noteOffset(r engine.Record) {
	tp := engine.TopicPartition{Topic: r.Topic, Partition: r.Partition}
	if cur, ok := w.maxOffsets[tp]; !ok || r.Offset > cur {
		w.maxOffsets[tp] = r.Offset
	}
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
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.segs[len(w.segs)-1]
	if s.size >= w.segmentBytes {
		if err := w.roll(s.first + s.n); err != nil {
			return 0, err
		}
		s = w.segs[len(w.segs)-1]
	}
	buf := w.buf[:0]
	for _, r := range recs {
		start := len(buf)
		buf = append(buf, make([]byte, headerBytes)...)
		buf = encode(buf, r)
		body := buf[start+headerBytes:]
		binary.BigEndian.PutUint32(buf[start:], uint32(len(body)))
		binary.BigEndian.PutUint32(buf[start+4:], crc32.Checksum(body, castagnoli))
		if s.n%indexEvery == 0 {
			s.index = append(s.index, s.size+int64(start))
		}
		s.n++
	}
	w.buf = buf
	if _, err := w.f.Write(buf); err != nil {
		return 0, err
	}
	if err := w.f.Sync(); err != nil {
		return 0, err
	}
	s.size += int64(len(buf))
	for _, r := range recs {
		w.noteOffset(r)
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

// Read returns up to max records (0 = no limit) starting at sequence from.
func (w *WAL) Read(from int64, max int) ([]engine.Record, error) {
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
	var out []engine.Record
	for _, s := range segs {
		if from < s.first {
			from = s.first
		}
		want := s.n - (from - s.first)
		if max > 0 {
			want = min(want, int64(max-len(out)))
		}
		recs, err := readSegment(s, from, int(want))
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
		from += int64(len(recs))
		if max > 0 && len(out) >= max {
			break
		}
	}
	return out, nil
}

func readSegment(s segment, from int64, n int) ([]engine.Record, error) {
	if n <= 0 {
		return nil, nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rel := from - s.first
	slot := rel / indexEvery
	if _, err := f.Seek(s.index[slot], io.SeekStart); err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(io.LimitReader(f, s.size-s.index[slot]), 1<<20)
	skip := rel - slot*indexEvery
	out := make([]engine.Record, 0, n)
	var hdr [headerBytes]byte
	for len(out) < n {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, fmt.Errorf("wal %s: %w", s.path, err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:4]))
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, fmt.Errorf("wal %s: %w", s.path, err)
		}
		if skip > 0 {
			skip--
			continue
		}
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
			return nil, fmt.Errorf("wal %s: checksum mismatch at sequence %d", s.path, from+int64(len(out)))
		}
		rec, err := decode(body)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
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

// encode appends r's wire form to b.
func encode(b []byte, r engine.Record) []byte {
	b = appendBytes(b, []byte(r.Topic))
	b = binary.AppendVarint(b, int64(r.Partition))
	b = binary.AppendVarint(b, r.Offset)
	t := int64(noTime)
	if !r.Time.IsZero() {
		t = r.Time.UnixNano()
	}
	b = binary.AppendVarint(b, t)
	b = appendBytes(b, r.Key)
	b = appendBytes(b, r.Value)
	b = binary.AppendUvarint(b, uint64(len(r.Headers)))
	for _, h := range r.Headers {
		b = appendBytes(b, []byte(h.Key))
		b = appendBytes(b, h.Value)
	}
	return b
}

// appendBytes writes a length (0 = nil, n+1 = n bytes) and the bytes.
func appendBytes(b, v []byte) []byte {
	if v == nil {
		return binary.AppendUvarint(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	return append(b, v...)
}

var errCorrupt = errors.New("wal: corrupt entry")

// noTime encodes a record without a timestamp.
const noTime = math.MinInt64

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > uint64(len(d.b)-n)+1 {
		d.err = errCorrupt
		return nil
	}
	d.b = d.b[n:]
	if v == 0 {
		return nil
	}
	out := d.b[: v-1 : v-1]
	d.b = d.b[v-1:]
	return out
}

func decode(body []byte) (engine.Record, error) {
	d := &decoder{b: body}
	var r engine.Record
	r.Topic = string(d.bytes())
	r.Partition = int32(d.varint())
	r.Offset = d.varint()
	if t := d.varint(); t != noTime {
		r.Time = time.Unix(0, t)
	}
	r.Key = d.bytes()
	r.Value = d.bytes()
	nh, n := binary.Uvarint(d.b)
	if n <= 0 || nh > uint64(len(d.b)) {
		return r, errCorrupt
	}
	d.b = d.b[n:]
	for range nh {
		k := d.bytes()
		v := d.bytes()
		r.Headers = append(r.Headers, engine.Header{Key: string(k), Value: v})
	}
	if d.err != nil {
		return r, d.err
	}
	return r, nil
}
