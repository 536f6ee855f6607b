package storage

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sluicehq/sluice/internal/durable"
)

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

// AppendBatches validates every batch in b (magic v2, lengths, CRC-32C,
// every record decoded (checkRecords), and the sequence of an idempotent
// producer's batch), assigns offsets from the
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
	p.mu.RLock()
	maxBatch, needKey := p.cfg.MaxBatchBytes, p.cfg.Compact
	p.mu.RUnlock()
	for rest := b; len(rest) > 0; {
		h, err := checkBatch(rest, true)
		if err != nil {
			return AppendResult{}, err
		}
		if err := checkClientBatch(h); err != nil {
			return AppendResult{}, err
		}
		// Before decoding: a batch the topic refuses is not decompressed.
		if maxBatch > 0 && int64(h.size()) > maxBatch {
			return AppendResult{}, fmt.Errorf("%w: batch of %d bytes, the topic allows %d (max.message.bytes)", ErrTooLarge, h.size(), maxBatch)
		}
		// Outside the lock: appends to other partitions, and reads of
		// this one, do not wait for a decompression.
		if err := checkRecordsOf(rest, h, inflateLimit(maxBatch), needKey); err != nil {
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
		return AppendResult{}, p.closedErr()
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
// first if the active one is full or old. The caller holds p.mu for writing.
func (p *Partition) activeFor(n int64, now time.Time) (*segment, error) {
	p.assertWriteLocked()
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
// On failure nothing is written. The caller holds p.mu for writing.
func (p *Partition) write(seg *segment, b []byte, hs []header) error {
	p.assertWriteLocked()
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

// roll seals the active segment (fsync, index files) and starts a new one at
// the log end. The caller holds p.mu for writing.
func (p *Partition) roll(now time.Time) (*segment, error) {
	p.assertWriteLocked()
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
			return 0, p.closedErr()
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
