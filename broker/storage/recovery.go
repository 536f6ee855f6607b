package storage

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/internal/durable"
)

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
