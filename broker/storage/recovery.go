package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/sluicehq/sluice/internal/durable"
)

// OpenPartition opens or creates the log in dir. clean says the previous
// process closed the log properly; otherwise the active segment is re-checked
// batch by batch (CRC-32C) and cut at the first torn or corrupt batch. After
// a clean stop only its last activeTailCheckBytes are checked so, and cut
// the same way if damaged. Sealed segments were fsynced when they were
// rolled; their index files are checked against the batch headers, and a
// segment without usable ones is scanned with CRCs. A sealed segment found
// damaged does not fail the open: the partition opens offline (Offline
// says why) and the error is logged.
func OpenPartition(dir string, cfg Config, clean bool) (*Partition, error) {
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create partition directory: %w", err)
	}
	p := &Partition{dir: dir, cfg: cfg}
	if err := recoverClean(dir, cfg); err != nil {
		return nil, err
	}
	p.cleaned = loadCleanerState(dir, cfg)
	if len(p.cleaned.spans) > 0 {
		// What was kept is not known: the earliest it may go.
		p.nextHorizonMs = p.cleaned.spans[0].atMs + cfg.DeleteRetention.Milliseconds()
	}
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
		var damage *DamagedError
		if errors.As(err, &damage) {
			p.closeSegments()
			off := offlinePartition(dir, cfg, damage)
			cfg.Logger.Error("partition offline: a sealed segment of its log is damaged",
				"partition", off.name(), "file", damage.Segment, "offset", damage.Offset, "position", damage.Pos, "err", off.offline)
			return off, nil
		}
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
	if err := p.loadLogStart(); err != nil {
		p.closeSegments()
		return nil, err
	}
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
	seg := &segment{base: base, dir: p.dir, f: f, next: base, maxTs: -1, created: time.Now(), gaps: p.cleaned.covers(base)}
	seg.refs.Store(1)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	// Sealed segments keep their index files; the active one's are written
	// by Close, so after a clean shutdown they spare reading the segment.
	indexed := (!active || clean) && seg.loadIndexFiles(fi.Size(), next, p.cfg.IndexIntervalBytes)
	if indexed && !active {
		if err := seg.loadTxnIndex(); err != nil {
			f.Close()
			return nil, err
		}
		return seg, nil
	}
	if indexed {
		intact, err := p.checkTail(seg)
		if err != nil {
			f.Close()
			return nil, err
		}
		// A damaged tail is cut as after an unclean stop: from the first
		// batch that fails, found by a scan from the start.
		indexed = intact
	}
	if !indexed {
		if err := p.recoverSegment(seg, fi.Size(), active, clean, next); err != nil {
			f.Close()
			return nil, err
		}
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

// recoverSegment rebuilds a segment's index by reading it, checking every
// batch's CRC (the scan reads every byte anyway). A damaged active segment
// is cut at the first batch that fails; a damaged sealed one is a
// *DamagedError.
func (p *Partition) recoverSegment(seg *segment, fileSize int64, active, clean bool, next int64) error {
	path := segmentName(p.dir, seg.base, logSuffix)
	// After a clean stop a batch whose CRC alone fails is kept (keepCorrupt);
	// after an unclean one it is taken for a torn write and cut, as Kafka's
	// recovery does.
	var keep func(*CorruptError)
	if active && clean {
		keep = func(bad *CorruptError) { p.keepCorrupt(seg, bad) }
	}
	validEnd, reason, err := seg.scan(fileSize, keep, p.cfg.IndexIntervalBytes)
	if err != nil {
		return fmt.Errorf("read segment %s: %w", path, err)
	}
	if reason != nil || validEnd != fileSize {
		if !active {
			return &DamagedError{Segment: path, Offset: seg.next, Pos: validEnd, Reason: reason}
		}
		p.cfg.Logger.Warn("truncating torn or corrupt tail of partition log; offsets from here on will be written again",
			"partition", p.name(), "offset", seg.next, "file", path, "position", validEnd, "size", fileSize, "reason", reason)
		if err := seg.f.Truncate(validEnd); err != nil {
			return fmt.Errorf("truncate torn tail of %s: %w", path, err)
		}
		if err := seg.f.Sync(); err != nil {
			return err
		}
	}
	if !active && !seg.endsAt(seg.next, next) {
		return &DamagedError{Segment: path, Offset: seg.next, Pos: seg.size,
			Reason: fmt.Errorf("it ends at offset %d but the next segment starts at %d", seg.next, next)}
	}
	seg.markVerified(0, seg.size, seg.next)
	if !active {
		if err := seg.writeIndexFiles(); err != nil {
			return fmt.Errorf("rewrite index of %s: %w", path, err)
		}
	}
	return nil
}

// activeTailCheckBytes is how much of the active segment's end is checked
// (headers, offsets, CRC-32C) at every open after a clean stop: one
// consumer fetch's worth (Kafka's default max.partition.fetch.bytes), read
// with one pread per partition, so a restart costs the same however large
// the segment. It covers the newest batches, which appends continue after
// and consumers at the head read first; the read path checks every other
// batch before serving it (corrupt.go), so nothing beyond it is served
// unchecked either. After an unclean stop the whole segment is checked.
const activeTailCheckBytes = verifyChunkBytes

// checkTail checks the last activeTailCheckBytes of the active segment,
// whose index loadIndexFiles restored. intact is false if the batches
// there do not follow each other to the end (a torn tail, cut by a scan).
// A batch whose CRC alone fails is kept (keepCorrupt).
func (p *Partition) checkTail(s *segment) (intact bool, err error) {
	if s.size == 0 {
		return true, nil
	}
	k := sort.Search(len(s.index), func(k int) bool { return int64(s.index[k].pos) > s.size-activeTailCheckBytes }) - 1
	k = max(k, 0)
	from, off := int64(s.index[k].pos), s.base+int64(s.index[k].rel)
	for pos := from; pos < s.size; {
		_, _, bad, err := s.verifyBatches(pos, s.size, off)
		if err != nil {
			return false, err
		}
		if bad == nil {
			break
		}
		if !bad.framed {
			return false, nil
		}
		p.keepCorrupt(s, bad)
		pos, off = bad.end, bad.next
	}
	s.markVerified(from, s.size, s.next)
	return true, nil
}

// keepCorrupt records a batch whose CRC fails but whose header is sound,
// found at open after a clean stop. It is kept rather than cut: the stop
// was clean, so this is not a torn write, and cutting it would drop the
// intact batches after it and give their offsets to new records. Reads
// refuse it (CORRUPT_MESSAGE) like one they find themselves.
func (p *Partition) keepCorrupt(s *segment, bad *CorruptError) {
	if s.vd.bad == nil {
		s.vd.bad = map[int64]*CorruptError{}
	}
	s.vd.bad[bad.Pos] = bad
	p.reportCorrupt(s, bad)
}

func firstTimestamp(f *os.File) int64 {
	var hdr [batchHeaderLen]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return -1
	}
	return parseHeader(hdr[:]).maxTimestamp
}
