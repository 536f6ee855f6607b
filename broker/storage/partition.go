package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/sluicehq/sluice/broker/internal/groupsync"
	"github.com/sluicehq/sluice/internal/durable"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Config tunes one partition log. Zero values take the defaults named.
type Config struct {
	// SegmentBytes rolls the active segment when an append would take it
	// past this size (default DefaultSegmentBytes, at most MaxSegmentBytes).
	SegmentBytes int64
	// SegmentAge rolls the active segment once its first batch is this old
	// (default 7 days, as Kafka's segment.ms).
	SegmentAge time.Duration
	// RetentionAge deletes sealed segments whose newest record is older
	// (default 168h, as Kafka's retention.ms; negative keeps forever).
	RetentionAge time.Duration
	// RetentionBytes deletes the oldest sealed segments while the log would
	// still hold at least this many bytes without them (0 or negative: no
	// limit, Kafka's retention.bytes=-1).
	RetentionBytes int64
	// MaxBatchBytes rejects larger batches with ErrTooLarge (default: no
	// limit besides the protocol frame size).
	MaxBatchBytes int64
	// IndexIntervalBytes is the log distance between sparse index entries
	// (default DefaultIndexIntervalBytes).
	IndexIntervalBytes int64
	// Logger receives recovery and retention messages (default slog.Default).
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = DefaultSegmentBytes
	}
	c.SegmentBytes = min(c.SegmentBytes, MaxSegmentBytes)
	if c.SegmentAge <= 0 {
		c.SegmentAge = 7 * 24 * time.Hour
	}
	if c.RetentionAge == 0 {
		c.RetentionAge = 168 * time.Hour
	}
	if c.IndexIntervalBytes <= 0 {
		c.IndexIntervalBytes = DefaultIndexIntervalBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Partition is one partition's log. Appends are serialised; reads run
// concurrently with appends and each other.
type Partition struct {
	dir string

	mu      sync.RWMutex
	cfg     Config
	segs    []*segment // sorted by base; the last one takes appends
	end     int64      // log end offset: the next offset to assign
	closed  bool
	waiters []waiter
	// producers is the idempotent producer state; see producers.go.
	producers *producerStates

	// Group commit: one fsync at a time; callers that arrive while one runs
	// wait for the next, which covers all of them.
	synced groupsync.Syncer // how far the log is fsynced
}

// waiter is a long-poll waiting for the log (stable: its last stable
// offset) to move.
type waiter struct {
	ch     chan struct{}
	stable bool
}

// OpenPartition opens or creates the log in dir. clean says the previous
// process closed the log properly; otherwise the active segment is re-checked
// batch by batch (CRC-32C) and cut at the first torn or corrupt batch.
// Sealed segments were fsynced when they were rolled.
func OpenPartition(dir string, cfg Config, clean bool) (*Partition, error) {
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create partition directory: %w", err)
	}
	p := &Partition{dir: dir, cfg: cfg}
	bases, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	fresh := len(bases) == 0
	if fresh {
		bases = []int64{0}
	}
	for i, base := range bases {
		seg, err := p.openSegment(base, i == len(bases)-1, clean, nextBase(bases, i))
		if err != nil {
			p.closeSegments()
			return nil, err
		}
		p.segs = append(p.segs, seg)
	}
	if fresh {
		// The first segment's directory entries must be durable before an
		// fsync of the segment can acknowledge anything.
		for _, d := range []string{dir, filepath.Dir(dir)} {
			if err := durable.SyncDir(d); err != nil {
				p.closeSegments()
				return nil, err
			}
		}
	}
	last := p.segs[len(p.segs)-1]
	p.end = last.next
	p.synced.Advance(p.end)
	if err := p.loadProducers(time.Now()); err != nil {
		p.closeSegments()
		return nil, err
	}
	return p, nil
}

func nextBase(bases []int64, i int) int64 {
	if i+1 < len(bases) {
		return bases[i+1]
	}
	return -1
}

func (p *Partition) openSegment(base int64, active, clean bool, next int64) (*segment, error) {
	path := segmentName(p.dir, base, logSuffix)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open segment: %w", err)
	}
	seg := &segment{base: base, dir: p.dir, f: f, next: base, maxTs: -1, created: time.Now()}
	seg.refs.Store(1)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	// Sealed segments keep their index files; the active one's are written
	// by Close, so after a clean shutdown they spare reading the segment.
	if (!active || clean) && seg.loadIndexFiles(fi.Size(), next, p.cfg.IndexIntervalBytes) {
		if !active {
			if err := seg.loadTxnIndex(); err != nil {
				f.Close()
				return nil, err
			}
			return seg, nil
		}
	} else if err := p.recoverSegment(seg, fi.Size(), active, clean, next); err != nil {
		f.Close()
		return nil, err
	}
	if err := seg.loadTxnIndex(); err != nil {
		f.Close()
		return nil, err
	}
	if seg.size > 0 {
		if ts := firstTimestamp(f); ts > 0 {
			seg.created = time.UnixMilli(ts)
		}
	}
	if _, err := f.Seek(seg.size, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return seg, nil
}

// recoverSegment rebuilds a segment's index by reading it, checking CRCs of
// the active segment after an unclean stop and cutting a torn tail there.
func (p *Partition) recoverSegment(seg *segment, fileSize int64, active, clean bool, next int64) error {
	path := segmentName(p.dir, seg.base, logSuffix)
	validEnd, reason, err := seg.scan(fileSize, active && !clean, p.cfg.IndexIntervalBytes)
	if err != nil {
		return fmt.Errorf("read segment %s: %w", path, err)
	}
	if reason != nil || validEnd != fileSize {
		if !active {
			return fmt.Errorf("sealed segment %s is damaged (%v); restore it from a backup or remove it and the segments after it", path, reason)
		}
		p.cfg.Logger.Warn("truncating torn tail of partition log", "segment", path, "from", validEnd, "size", fileSize, "reason", reason)
		if err := seg.f.Truncate(validEnd); err != nil {
			return fmt.Errorf("truncate torn tail of %s: %w", path, err)
		}
		if err := seg.f.Sync(); err != nil {
			return err
		}
	}
	if !active && (next >= 0 && seg.next != next) {
		return fmt.Errorf("sealed segment %s ends at offset %d but the next segment starts at %d; the log directory is damaged", path, seg.next, next)
	}
	if !active {
		if err := seg.writeIndexFiles(); err != nil {
			return fmt.Errorf("rewrite index of %s: %w", path, err)
		}
	}
	return nil
}

func firstTimestamp(f *os.File) int64 {
	var hdr [batchHeaderLen]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return -1
	}
	return parseHeader(hdr[:]).maxTimestamp
}

// SetConfig replaces the partition's retention and roll settings.
func (p *Partition) SetConfig(cfg Config) {
	p.mu.Lock()
	p.cfg = cfg.withDefaults()
	p.mu.Unlock()
}

// StartOffset is the first offset still in the log.
func (p *Partition) StartOffset() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.segs[0].base
}

// EndOffset is the log end offset: the offset the next record will get.
func (p *Partition) EndOffset() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.end
}

// Offsets returns the start and end offsets together.
func (p *Partition) Offsets() (start, end int64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.segs[0].base, p.end
}

// Size is the bytes of all segments.
func (p *Partition) Size() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var n int64
	for _, s := range p.segs {
		n += s.size
	}
	return n
}

// Append is AppendBatches for callers that need only the offsets.
func (p *Partition) Append(b []byte, now time.Time) (base, next int64, err error) {
	r, err := p.AppendBatches(b, now)
	return r.Base, r.Next, err
}

// AppendResult says where an append's records are.
type AppendResult struct {
	// Base is the offset of the first record and Next the offset after the
	// last one.
	Base, Next int64
	// Duplicate says b was an idempotent producer's retry of a batch
	// already in the log: nothing was written, and Base and Next are the
	// original batch's.
	Duplicate bool
}

// AppendBatches validates every batch in b (magic v2, lengths, CRC-32C, and
// the sequence of an idempotent producer's batch), assigns offsets from the
// log end, patches them into b and writes b to the active segment. Nothing
// is stored unless every batch is valid. The data is in the page cache on
// return; call Sync(Next) for durability, also after a duplicate, whose
// original may not be synced yet.
func (p *Partition) AppendBatches(b []byte, now time.Time) (AppendResult, error) {
	if len(b) == 0 {
		return AppendResult{}, fmt.Errorf("%w: no record batches", ErrCorrupt)
	}
	var hs []header
	var hbuf [8]header
	hs = hbuf[:0]
	for rest := b; len(rest) > 0; {
		h, err := checkBatch(rest, true)
		if err != nil {
			return AppendResult{}, err
		}
		if err := checkClientBatch(h); err != nil {
			return AppendResult{}, err
		}
		hs = append(hs, h)
		rest = rest[h.size():]
	}
	idem := hs[0].idempotent()
	if len(hs) > 1 {
		for _, h := range hs {
			if h.idempotent() {
				// Kafka refuses every multi-batch produce from v3 on; we
				// still take them from plain producers, but a retry could
				// only be recognised batch by batch.
				return AppendResult{}, fmt.Errorf("%w: %d batches for one partition with an idempotent producer's among them; send one batch per partition per request, as Kafka requires", ErrInvalidRecord, len(hs))
			}
		}
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return AppendResult{}, ErrClosed
	}
	if limit := p.cfg.MaxBatchBytes; limit > 0 {
		for _, h := range hs {
			if h.size() > limit {
				return AppendResult{}, fmt.Errorf("%w: batch of %d bytes, the topic allows %d (max.message.bytes)", ErrTooLarge, h.size(), limit)
			}
		}
	}
	if idem {
		dup, isDup, err := p.producers.check(hs[0])
		if err != nil {
			return AppendResult{}, err
		}
		if isDup {
			return AppendResult{Base: dup.firstOffset, Next: dup.nextOffset(), Duplicate: true}, nil
		}
	}
	seg, err := p.activeFor(int64(len(b)), now)
	if err != nil {
		return AppendResult{}, err
	}
	oldLSO := p.lso()
	base := p.end
	off := base
	for i := range hs {
		hs[i].baseOffset = off
		off = hs[i].nextOffset()
	}
	if err := p.write(seg, b, hs); err != nil {
		return AppendResult{}, err
	}
	if idem {
		p.producers.add(hs[0], now.UnixMilli())
	}
	p.notify(p.lso() != oldLSO)
	return AppendResult{Base: base, Next: p.end}, nil
}

// activeFor returns the segment an append of n bytes goes to, rolling
// first if the active one is full or old. The caller holds p.mu.
func (p *Partition) activeFor(n int64, now time.Time) (*segment, error) {
	seg := p.segs[len(p.segs)-1]
	if seg.size > 0 && (seg.size+n > p.cfg.SegmentBytes || now.Sub(seg.created) >= p.cfg.SegmentAge) {
		var err error
		if seg, err = p.roll(now); err != nil {
			return nil, err
		}
	}
	if seg.size == 0 {
		seg.created = now
	}
	return seg, nil
}

// write patches the batches of b (whose headers hs carry their assigned
// base offsets) and writes them at the log end of seg, the active segment.
// On failure nothing is written. The caller holds p.mu.
func (p *Partition) write(seg *segment, b []byte, hs []header) error {
	oldIndex, oldSince, oldMax, oldNext := len(seg.index), seg.sinceIndex, seg.maxTs, seg.next
	pos := seg.size
	for _, h := range hs {
		patchBatch(b[pos-seg.size:], h.baseOffset)
		seg.maybeIndex(h, pos, p.cfg.IndexIntervalBytes)
		pos += h.size()
	}
	if _, werr := seg.f.Write(b); werr != nil {
		// Put the file back where it was so the log stays a sequence of
		// whole batches; the client retries.
		seg.index, seg.sinceIndex, seg.maxTs, seg.next = seg.index[:oldIndex], oldSince, oldMax, oldNext
		if terr := seg.f.Truncate(seg.size); terr == nil {
			seg.f.Seek(seg.size, io.SeekStart)
		}
		return fmt.Errorf("write partition log %s: %w", p.dir, werr)
	}
	seg.size = pos
	p.end = hs[len(hs)-1].nextOffset()
	return nil
}

// notify wakes the long-polls waiting for the log to grow, and those
// waiting for the last stable offset when it moved. The caller holds p.mu.
func (p *Partition) notify(lsoMoved bool) {
	kept := p.waiters[:0]
	for _, w := range p.waiters {
		if w.stable && !lsoMoved {
			kept = append(kept, w)
			continue
		}
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
	clear(p.waiters[len(kept):])
	p.waiters = kept
}

// roll seals the active segment (fsync, index files) and starts a new one at
// the log end. The caller holds p.mu.
func (p *Partition) roll(now time.Time) (*segment, error) {
	old := p.segs[len(p.segs)-1]
	if err := old.f.Sync(); err != nil {
		return nil, fmt.Errorf("sync segment before roll: %w", err)
	}
	if err := old.writeIndexFiles(); err != nil {
		return nil, fmt.Errorf("write segment index: %w", err)
	}
	if err := old.writeTxnIndex(); err != nil {
		return nil, err
	}
	// The log is durable up to p.end, so the snapshot may describe it. A
	// failed snapshot costs only a longer replay at the next open.
	if err := p.writeProducerSnapshot(); err != nil {
		p.cfg.Logger.Warn("producer snapshot at segment roll failed; the next open replays more of the log", "dir", p.dir, "err", err)
	}
	path := segmentName(p.dir, p.end, logSuffix)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	// The new file's directory entry must be durable before an fsync of
	// the file can acknowledge data in it.
	if err := durable.SyncDir(p.dir); err != nil {
		f.Close()
		return nil, err
	}
	seg := &segment{base: p.end, dir: p.dir, f: f, next: p.end, maxTs: -1, created: now}
	seg.refs.Store(1)
	p.segs = append(p.segs, seg)
	return seg, nil
}

// Sync makes every record before offset upto durable. Concurrent callers
// share fsyncs: while one runs, later callers wait and the next fsync covers
// all of them.
func (p *Partition) Sync(upto int64) error {
	return p.synced.Sync(upto, func() (int64, error) {
		p.mu.RLock()
		if p.closed {
			p.mu.RUnlock()
			return 0, ErrClosed
		}
		target := p.end
		seg := p.segs[len(p.segs)-1]
		seg.acquire()
		p.mu.RUnlock()
		err := seg.f.Sync()
		seg.release()
		if err != nil {
			return 0, fmt.Errorf("fsync partition log %s: %w", p.dir, err)
		}
		return target, nil
	})
}

// Section is a byte range of a segment file holding whole record batches.
// The holder must call Release; until then the file stays open even if
// retention deletes the segment.
type Section struct {
	File *os.File
	Pos  int64
	Len  int64
	// Next is the offset after its last batch.
	Next int64
	seg  *segment
}

// Release lets the segment file be closed.
func (s Section) Release() {
	if s.seg != nil {
		s.seg.release()
	}
}

// Read returns the batches starting with the one that holds offset, up to
// maxBytes of whole batches, but at least one batch (as Kafka does, so a
// consumer is never stuck behind a batch larger than its limit). At the log
// end it returns an empty section.
func (p *Partition) Read(offset int64, maxBytes int64) (Section, error) {
	return p.ReadUpTo(offset, maxBytes, -1)
}

// ReadUpTo is Read that also stops before the first batch starting at or
// after upto (a read_committed consumer's last stable offset); -1 means the
// log end.
func (p *Partition) ReadUpTo(offset, maxBytes, upto int64) (Section, error) {
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return Section{}, ErrClosed
	}
	if offset < p.segs[0].base || offset > p.end {
		p.mu.RUnlock()
		return Section{}, ErrOffsetOutOfRange
	}
	if upto < 0 || upto > p.end {
		upto = p.end
	}
	if offset >= upto {
		p.mu.RUnlock()
		return Section{}, nil
	}
	i := sort.Search(len(p.segs), func(i int) bool { return p.segs[i].base > offset }) - 1
	for i < len(p.segs)-1 && offset >= p.segs[i].next {
		i++
	}
	seg := p.segs[i]
	size, index, next := seg.size, seg.index, seg.next
	seg.acquire()
	p.mu.RUnlock()

	if upto >= next {
		upto = -1 // the whole segment is below it
	}
	sec, err := seg.read(offset, maxBytes, size, index, next, upto)
	if err != nil || sec.Len == 0 {
		seg.release()
		return Section{}, err
	}
	sec.seg = seg
	return sec, nil
}

func (s *segment) readHeader(pos int64) (header, error) {
	var hdr [batchHeaderLen]byte
	if _, err := s.f.ReadAt(hdr[:], pos); err != nil {
		return header{}, fmt.Errorf("read batch header at %d: %w", pos, err)
	}
	return parseHeader(hdr[:]), nil
}

// read finds offset in the segment using a snapshot (size, index, next)
// taken under the partition lock, stopping before the batch at upto unless
// it is -1.
func (s *segment) read(offset, maxBytes, size int64, index []indexEntry, next, upto int64) (Section, error) {
	rel := offset - s.base
	j := sort.Search(len(index), func(j int) bool { return int64(index[j].rel) > rel }) - 1
	pos := int64(0)
	if j >= 0 {
		pos = int64(index[j].pos)
	}
	var first header
	for {
		if pos >= size {
			return Section{}, nil
		}
		h, err := s.readHeader(pos)
		if err != nil {
			return Section{}, err
		}
		if h.nextOffset() > offset {
			first = h
			break
		}
		pos += h.size()
	}
	if upto >= 0 && first.baseOffset >= upto {
		return Section{}, nil
	}
	start, end := pos, pos+first.size()
	limit := start + maxBytes
	if size <= limit {
		end = size
	} else {
		// Jump with the index to the last indexed batch that still fits,
		// then walk batch headers up to the limit.
		k := sort.Search(len(index), func(k int) bool { return int64(index[k].pos) > limit }) - 1
		if k >= 0 && int64(index[k].pos) > end {
			end = int64(index[k].pos)
		}
		for end < size {
			h, err := s.readHeader(end)
			if err != nil {
				return Section{}, err
			}
			if end+h.size() > limit {
				break
			}
			end += h.size()
		}
	}
	if upto >= 0 {
		// Find the first batch at or past upto in the chosen range,
		// walking from the last indexed batch before it.
		pos := start + first.size()
		k := sort.Search(len(index), func(k int) bool { return s.base+int64(index[k].rel) >= upto }) - 1
		if k >= 0 {
			pos = max(pos, int64(index[k].pos))
		}
		for pos < end {
			h, err := s.readHeader(pos)
			if err != nil {
				return Section{}, err
			}
			if h.baseOffset >= upto {
				end = pos
				break
			}
			pos += h.size()
		}
	}
	if end < size {
		h, err := s.readHeader(end)
		if err != nil {
			return Section{}, err
		}
		next = h.baseOffset
	}
	return Section{File: s.f, Pos: start, Len: end - start, Next: next}, nil
}

// OffsetForTime returns the offset and timestamp of the first record whose
// timestamp is at least ts, or -1, -1 if there is none. In a compressed
// batch it returns the batch's first offset and max timestamp instead of
// decompressing.
func (p *Partition) OffsetForTime(ts int64) (offset, timestamp int64, err error) {
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return -1, -1, ErrClosed
	}
	var seg *segment
	var size int64
	var index []indexEntry
	for _, s := range p.segs {
		if s.maxTs >= ts && s.size > 0 {
			seg, size, index = s, s.size, s.index
			break
		}
	}
	if seg == nil {
		p.mu.RUnlock()
		return -1, -1, nil
	}
	seg.acquire()
	p.mu.RUnlock()
	defer seg.release()

	j := sort.Search(len(index), func(j int) bool { return index[j].tsBefore >= ts }) - 1
	pos := int64(0)
	if j >= 0 {
		pos = int64(index[j].pos)
	}
	for pos < size {
		h, err := seg.readHeader(pos)
		if err != nil {
			return -1, -1, err
		}
		if h.maxTimestamp < ts {
			pos += h.size()
			continue
		}
		if h.compressed() || h.size() > maxBatchBytes {
			return h.baseOffset, h.maxTimestamp, nil
		}
		batch := make([]byte, h.size())
		if _, err := seg.f.ReadAt(batch, pos); err != nil {
			return -1, -1, err
		}
		if off, rts, ok := firstRecordAtOrAfter(batch, h, ts); ok {
			return off, rts, nil
		}
		return h.baseOffset, h.maxTimestamp, nil
	}
	return -1, -1, nil
}

// firstRecordAtOrAfter walks the records of an uncompressed batch.
func firstRecordAtOrAfter(batch []byte, h header, ts int64) (int64, int64, bool) {
	rest := batch[batchHeaderLen:]
	for i := int32(0); i < h.recordCount && len(rest) > 0; i++ {
		l, n := binary.Varint(rest)
		if n <= 0 || l < 0 || int64(n)+l > int64(len(rest)) {
			return 0, 0, false
		}
		var r kmsg.Record
		if err := r.ReadFrom(rest[:int64(n)+l]); err != nil {
			return 0, 0, false
		}
		if rts := h.baseTimestamp + r.TimestampDelta64; rts >= ts {
			return h.baseOffset + int64(r.OffsetDelta), rts, true
		}
		rest = rest[int64(n)+l:]
	}
	return 0, 0, false
}

// Wait registers ch to receive a signal when the log grows past offset. It
// returns false, registering nothing, if it already has. Call Unwait when
// done waiting.
func (p *Partition) Wait(offset int64, ch chan struct{}) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.end > offset || p.closed {
		return false
	}
	p.waiters = append(p.waiters, waiter{ch: ch})
	return true
}

// WaitStable is Wait for the last stable offset: ch is signalled when it
// moves past offset (a transaction is decided, or records are written
// while none is open).
func (p *Partition) WaitStable(offset int64, ch chan struct{}) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lso() > offset || p.closed {
		return false
	}
	p.waiters = append(p.waiters, waiter{ch: ch, stable: true})
	return true
}

// Unwait removes ch registered by Wait, if it is still there.
func (p *Partition) Unwait(ch chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, w := range p.waiters {
		if w.ch == ch {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			return
		}
	}
}

// EnforceRetention deletes sealed segments past the retention age or size
// and returns how many it deleted. The active segment is never deleted.
func (p *Partition) EnforceRetention(now time.Time) (int, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, nil
	}
	var total int64
	for _, s := range p.segs {
		total += s.size
	}
	n := 0
	for n < len(p.segs)-1 {
		s := p.segs[n]
		byTime := p.cfg.RetentionAge > 0 && s.maxTs >= 0 && now.Sub(time.UnixMilli(s.maxTs)) > p.cfg.RetentionAge
		byTime = byTime || (p.cfg.RetentionAge > 0 && s.size == 0)
		bySize := p.cfg.RetentionBytes > 0 && total-s.size >= p.cfg.RetentionBytes
		if !byTime && !bySize {
			break
		}
		total -= s.size
		n++
	}
	dead := append([]*segment(nil), p.segs[:n]...)
	p.segs = append(p.segs[:0:0], p.segs[n:]...)
	p.mu.Unlock()

	var errs []error
	for _, s := range dead {
		for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix, txnIndexSuffix} {
			if err := os.Remove(segmentName(p.dir, s.base, suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		s.release()
	}
	if n > 0 {
		p.cfg.Logger.Info("retention deleted segments", "dir", p.dir, "segments", n, "log_start_offset", p.StartOffset())
		if err := durable.SyncDir(p.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// Close syncs and closes the log. Sections already handed out stay readable
// until released.
func (p *Partition) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.notify(true)
	p.waiters = nil
	active := p.segs[len(p.segs)-1]
	err := active.f.Sync()
	if err == nil && len(active.index) > 0 {
		// Lets the next clean open skip reading the active segment.
		err = active.writeIndexFiles()
	}
	if err == nil {
		err = active.writeTxnIndex()
	}
	if err == nil {
		// Lets the next open skip rebuilding producer state from the log.
		err = p.writeProducerSnapshot()
	}
	p.closeSegments()
	p.mu.Unlock()
	return err
}

func (p *Partition) closeSegments() {
	for _, s := range p.segs {
		s.release()
	}
}

// Dir is the partition's directory.
func (p *Partition) Dir() string { return p.dir }
