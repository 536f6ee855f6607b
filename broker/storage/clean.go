package storage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/durable"
)

// Log compaction (cleanup.policy=compact; ARCHITECTURE §9, "Compaction").
// A clean of a partition log, as Kafka's LogCleaner does it:
//
//  1. Plan: the cleanable range runs from the log start to the first
//     segment that is active, holds the last stable offset, or is younger
//     than min.compaction.lag.ms. Offsets below the checkpoint's first
//     dirty offset were cleaned before; the rest of the range is dirty.
//  2. Map: the dirty batches are read in order into the offset map (key
//     hash → latest offset), skipping control batches and aborted
//     transactions' data. A full map ends the pass at a batch boundary;
//     the next pass goes on from there.
//  3. Rewrite: every segment below where the map ended is copied, in
//     groups that fit segment.bytes, into "<base>.log.cleaned" files,
//     keeping a record unless a later one of its key is in the map, it is
//     keyless, below the log start, in an aborted transaction, or a
//     tombstone first cleaned more than delete.retention.ms ago. A batch
//     keeps its base offset, last offset delta, producer fields and
//     sequence, so offsets and idempotent producers' state are unchanged;
//     a batch left with no record is dropped. A transaction marker is
//     dropped once no data of its transaction is left and
//     delete.retention.ms passed since it was cleaned. Index, time index
//     and transaction index are built for each new segment.
//  4. Commit: the swap file naming old and new segments and holding the
//     new checkpoint (first dirty offset, when each stretch was first
//     cleaned) is written durably: from here the clean happens even across
//     a crash. The partition's segment list is swapped under its lock
//     (readers keep the old files through their references), then
//     applySwap writes the checkpoint, renames the files into place and
//     removes the swap file; the next open repeats it after a crash.

// CleanOptions tune one Clean call.
type CleanOptions struct {
	// Now is the clean's clock (default time.Now()).
	Now time.Time
	// Force cleans even a log below min.cleanable.dirty.ratio: any dirty
	// byte, or tombstones only, is enough.
	Force bool
	// Throttle, if set, bounds the clean's I/O.
	Throttle *Throttle
	// BufferBytes sizes the offset map when the call has none of a
	// Cleaner (default DefaultCleanerBufferBytes).
	BufferBytes int64

	// buf is the offset map to reuse, if any; keep, if set, is given the
	// map the clean ended with (a larger one if it had to grow).
	buf  *offsetMap
	keep **offsetMap
	// step, if set, is told of each commit step ("cleaned", "checkpoint",
	// "manifest", then applySwap's); an error stops the clean there, as a
	// crash would (tests).
	step func(string) error
}

// CleanStats says what a Clean did.
type CleanStats struct {
	Passes         int
	BytesRead      int64
	BytesWritten   int64
	RecordsRemoved int64
	// SizeBefore and SizeAfter are the bytes of the segments rewritten.
	SizeBefore, SizeAfter int64
}

// DefaultCleanerBufferBytes is the default bound of a clean's offset map:
// 32 MiB, 1.4 million slots, so 1.26 million distinct keys per pass. A map
// is only as large as a clean needs (sizeMap). Kafka's
// 128 MiB assumes a dedicated server; the built-in broker shares a
// process (and often a laptop) with pipelines. A log with more keys is
// cleaned in more passes, not with more memory.
const DefaultCleanerBufferBytes = 32 << 20

// cleanWriteBufferBytes buffers the writes of a cleaned segment.
const cleanWriteBufferBytes = 256 << 10

// CleanState is where a log stands for the cleaner.
type CleanState struct {
	// Ratio is the dirty share of the cleanable bytes.
	Ratio float64
	// Due says the cleaner should take the log now: its ratio reached
	// min.cleanable.dirty.ratio, its oldest dirty record passed
	// max.compaction.lag.ms, or tombstones are due to go.
	Due bool
	// Uncleanable is why an earlier clean failed, nil if none did.
	Uncleanable error
}

// cleanPlan is what a pass works on, taken under the partition lock.
type cleanPlan struct {
	cfg        Config
	state      cleanerState
	start      int64 // log start
	firstDirty int64
	cleanEnd   int64 // end of the cleanable range: a segment base
	segs       []*segment
	sizes      []int64 // of segs, which are sealed so do not change
	nextBases  []int64 // where each seg's range ends
	dirtyBytes int64
	totalBytes int64
	due        bool
}

// CleanState reports the log's dirty ratio and whether a clean is due.
func (p *Partition) CleanState(now time.Time) CleanState {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return CleanState{Uncleanable: p.uncleanable}
	}
	pl := p.planLocked(now)
	st := CleanState{Due: pl.due, Uncleanable: p.uncleanable}
	if pl.totalBytes > 0 {
		st.Ratio = float64(pl.dirtyBytes) / float64(pl.totalBytes)
	}
	return st
}

// Compacted says the log's cleanup.policy has compact.
func (p *Partition) Compacted() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.cfg.Compact && !p.closed
}

// planLocked computes the cleanable range; the caller holds mu.
func (p *Partition) planLocked(now time.Time) cleanPlan {
	p.assertLocked()
	pl := cleanPlan{cfg: p.cfg, state: p.cleaned, start: p.logStart()}
	pl.state.spans = slices.Clone(pl.state.spans)
	active := p.segs[len(p.segs)-1]
	lso := p.lso()
	pl.cleanEnd = active.base
	lagMs := now.Add(-p.cfg.MinCompactionLag).UnixMilli()
	for _, s := range p.segs[:len(p.segs)-1] {
		if s.next > lso || (p.cfg.MinCompactionLag > 0 && s.maxTs > lagMs) {
			pl.cleanEnd = s.base
			break
		}
	}
	pl.firstDirty = max(pl.state.firstDirty, pl.start)
	if pl.state.unknown {
		pl.firstDirty = pl.start
	}
	firstDirtyAt := int64(-1)
	for i, s := range p.segs[:len(p.segs)-1] {
		if s.base >= pl.cleanEnd {
			break
		}
		nb := p.segs[i+1].base
		pl.segs, pl.sizes, pl.nextBases = append(pl.segs, s), append(pl.sizes, s.size), append(pl.nextBases, nb)
		pl.totalBytes += s.size
		if nb > pl.firstDirty {
			pl.dirtyBytes += s.size
			if firstDirtyAt < 0 && s.size > 0 {
				firstDirtyAt = s.created.UnixMilli()
			}
		}
	}
	dirty := pl.firstDirty < pl.cleanEnd && pl.dirtyBytes > 0
	ratioDue := pl.totalBytes > 0 && float64(pl.dirtyBytes)/float64(pl.totalBytes) >= p.cfg.MinCleanableRatio
	lagDue := p.cfg.MaxCompactionLag > 0 && firstDirtyAt >= 0 && firstDirtyAt < now.Add(-p.cfg.MaxCompactionLag).UnixMilli()
	horizonDue := p.nextHorizonMs > 0 && now.UnixMilli() >= p.nextHorizonMs && len(pl.segs) > 0
	pl.due = p.cfg.Compact && p.uncleanable == nil && ((dirty && (ratioDue || lagDue)) || horizonDue)
	return pl
}

// Clean compacts the log if a clean is due (or o.Force), in as many passes
// as the offset map needs, and returns what it did. It is a no-op on a log
// whose cleanup.policy lacks compact. A crash at any point leaves the old
// segments or the new ones (see the top of this file).
func (p *Partition) Clean(ctx context.Context, o CleanOptions) (CleanStats, error) {
	var st CleanStats
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	limit := cmp0(o.BufferBytes, DefaultCleanerBufferBytes)
	p.cleanMu.Lock()
	defer p.cleanMu.Unlock()
	for {
		p.mu.RLock()
		if p.closed || !p.cfg.Compact {
			p.mu.RUnlock()
			return st, nil
		}
		pl := p.planLocked(o.Now)
		// Due, forced, or the last pass's map ended before the range did.
		more := pl.due || (o.Force && len(pl.segs) > 0) || (st.Passes > 0 && pl.firstDirty < pl.cleanEnd)
		if !more || p.uncleanable != nil {
			p.mu.RUnlock()
			return st, nil
		}
		for _, s := range pl.segs {
			s.acquire()
		}
		p.mu.RUnlock()
		o.sizeMap(pl.cleanEnd-pl.firstDirty, limit)
		mapEnd, err := p.cleanPass(ctx, &pl, &o, &st)
		for _, s := range pl.segs {
			s.release()
		}
		if err != nil {
			return st, err
		}
		st.Passes++
		if mapEnd >= pl.cleanEnd {
			return st, nil
		}
	}
}

// sizeMap makes o.buf big enough for keys distinct keys (a pass's dirty
// range holds at most one per offset), up to limit bytes: a clean takes
// the memory it needs, never more than the flag allows, so a broker whose
// compacted topics have few keys (a sink's checkpoint topic) does not hold
// the whole buffer.
func (o *CleanOptions) sizeMap(keys, limit int64) {
	want := min(limit, (keys+keys/8+16)*mapSlotBytes)
	if o.buf != nil && int64(len(o.buf.slots))*mapSlotBytes >= want {
		return
	}
	o.buf = newOffsetMap(want)
	if o.keep != nil {
		*o.keep = o.buf
	}
}

func cmp0(v, def int64) int64 {
	if v <= 0 {
		return def
	}
	return v
}

// abortedSet answers whether a producer's batch at an offset belongs to an
// aborted transaction.
type abortedSet map[int64][]AbortedTxn

func (a abortedSet) has(pid, off int64) bool {
	for _, t := range a[pid] {
		if t.FirstOffset <= off && off < t.LastOffset {
			return true
		}
	}
	return false
}

// cleanPass runs one pass and returns where its map ended.
func (p *Partition) cleanPass(ctx context.Context, pl *cleanPlan, o *CleanOptions, st *CleanStats) (int64, error) {
	aborted := abortedSet{}
	for _, a := range p.AbortedTxns(pl.start, pl.cleanEnd) {
		aborted[a.ProducerID] = append(aborted[a.ProducerID], a)
	}
	m := o.buf
	m.reset()
	mapEnd, err := p.buildMap(ctx, pl, m, aborted, o, st)
	if err != nil {
		return 0, err
	}
	// The segments below mapEnd are rewritten, in groups.
	k := 0
	for k < len(pl.segs) && pl.segs[k].base < mapEnd {
		k++
	}
	groups := groupSegments(pl, k)
	rw := &rewriter{p: p, pl: pl, m: m, mapEnd: mapEnd, aborted: aborted, o: o, st: st, txnData: map[int64]bool{},
		nowMs: o.Now.UnixMilli()}
	var news []*segment
	fail := func(err error) (int64, error) {
		for _, s := range news {
			s.f.Close()
			for _, suffix := range segmentSuffixes {
				os.Remove(segmentName(p.dir, s.base, suffix) + cleanedSuffix)
			}
		}
		return 0, err
	}
	for gi, g := range groups {
		s, err := rw.group(ctx, g)
		if s != nil {
			news = append(news, s)
		}
		if err != nil {
			return fail(err)
		}
		if s.size == 0 && gi > 0 {
			// Nothing left: the previous segment's range takes its
			// offsets. The first segment stays, as the log start.
			news = news[:len(news)-1]
			s.f.Close()
			for _, suffix := range segmentSuffixes {
				if err := os.Remove(segmentName(p.dir, s.base, suffix) + cleanedSuffix); err != nil {
					return fail(err)
				}
			}
		}
	}
	if err := durable.SyncDir(p.dir); err != nil {
		return fail(err)
	}
	if err := hookStep(o.step, "cleaned"); err != nil {
		return 0, err
	}
	state := pl.state.advanced(pl.start, mapEnd, rw.nowMs, pl.cfg.DeleteRetention)
	if pl.state.unknown {
		state = cleanerState{firstDirty: mapEnd, spans: []cleanSpan{{from: 0, atMs: rw.nowMs}}}
	}
	man := swapManifest{state: state}
	for _, s := range pl.segs[:k] {
		man.old = append(man.old, s.base)
	}
	for _, s := range news {
		man.new = append(man.new, s.base)
	}
	if err := durable.WriteFile(filepath.Join(p.dir, cleanerSwapFile), man.encode()); err != nil {
		return fail(fmt.Errorf("write cleaner swap file: %w", err))
	}
	if err := hookStep(o.step, "manifest"); err != nil {
		return 0, err
	}
	// Committed: whatever happens now, the next open finishes the swap.
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		for _, s := range news {
			s.f.Close()
		}
		return mapEnd, nil
	}
	for i, s := range pl.segs[:k] {
		if p.segs[i] != s {
			p.mu.Unlock()
			for _, s := range news {
				s.f.Close()
			}
			return 0, fmt.Errorf("segments of %s changed during a clean; the swap is finished at the next open", p.dir)
		}
	}
	old := pl.segs[:k]
	p.segs = append(news, p.segs[k:]...)
	p.cleaned = state
	p.nextHorizonMs = rw.nextHorizonMs
	// A producer snapshot at the log end, so the newest two snapshots are
	// past every cleaned segment: replaying the producer state from either
	// never meets a batch the clean removed (a removed batch may have been
	// a live producer's last). Like a roll, it needs the log durable to
	// its end first, and the active segment's aborted transactions on disk
	// (an open after a crash rebuilds only those past the snapshot).
	active := p.segs[len(p.segs)-1]
	if err := active.f.Sync(); err == nil {
		if err = active.writeTxnIndex(); err == nil {
			err = p.writeProducerSnapshot()
		}
		if err != nil {
			p.cfg.Logger.Warn("producer snapshot after a clean failed; the next open may replay cleaned segments", "dir", p.dir, "err", err)
		}
	}
	p.mu.Unlock()
	for _, s := range old {
		s.release() // the partition's reference; readers keep theirs
	}
	if err := applySwap(p.dir, man, o.step); err != nil {
		return 0, fmt.Errorf("finish swap of cleaned segments (the next open finishes it): %w", err)
	}
	return mapEnd, nil
}

// buildMap reads the dirty batches into m and returns the offset where the
// pass ends: cleanEnd, or the batch that did not fit.
func (p *Partition) buildMap(ctx context.Context, pl *cleanPlan, m *offsetMap, aborted abortedSet, o *CleanOptions, st *CleanStats) (int64, error) {
	for i, s := range pl.segs {
		if pl.nextBases[i] <= pl.firstDirty {
			continue
		}
		br := newBatchReader(ctx, s, pl.sizes[i], o.Throttle, st)
		for {
			h, b, err := br.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return 0, err
			}
			if h.nextOffset() <= pl.firstDirty || h.control() || (h.transactional() && aborted.has(h.producerID, h.baseOffset)) {
				continue
			}
			if !m.room(int(h.recordCount)) {
				if m.used == 0 {
					return 0, fmt.Errorf("the cleaner's offset map holds %d keys, fewer than the %d records of the batch at offset %d: raise --log-cleaner-dedupe-buffer-size",
						m.limit, h.recordCount, h.baseOffset)
				}
				return h.baseOffset, nil
			}
			err = eachRecord(b, h, func(r rawRecord) error {
				if !r.keyNull {
					m.put(r.key, h.baseOffset+r.delta)
				}
				return nil
			})
			if err != nil {
				return 0, err
			}
		}
	}
	return pl.cleanEnd, nil
}

// groupSegments splits the first k segments of the plan into runs that
// fit one segment after cleaning: at most segment.bytes by their current
// sizes and an offset span an index entry can hold (uint32), as Kafka
// groups them, so small cleaned segments merge over time.
func groupSegments(pl *cleanPlan, k int) [][]int {
	var groups [][]int
	var cur []int
	var size int64
	for i := 0; i < k; i++ {
		if len(cur) > 0 && (size+pl.sizes[i] > pl.cfg.SegmentBytes || pl.nextBases[i]-pl.segs[cur[0]].base > math.MaxUint32) {
			groups = append(groups, cur)
			cur, size = nil, 0
		}
		cur = append(cur, i)
		size += pl.sizes[i]
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

// rewriter writes the cleaned segments of one pass.
type rewriter struct {
	p       *Partition
	pl      *cleanPlan
	m       *offsetMap
	mapEnd  int64
	aborted abortedSet
	o       *CleanOptions
	st      *CleanStats
	nowMs   int64
	// txnData says a producer's current transaction kept data so far in
	// this pass: its marker must stay.
	txnData map[int64]bool
	// nextHorizonMs is the earliest time a kept tombstone or marker may go.
	nextHorizonMs int64
	recs          []byte // scratch: retained records
}

// horizon reports whether a tombstone or marker at off may go, and when it
// may if not yet.
func (rw *rewriter) horizon(off int64) (gone bool, at int64) {
	cleaned := rw.pl.state.cleanedAt(off)
	if rw.pl.state.unknown || cleaned < 0 {
		return false, rw.nowMs + rw.pl.cfg.DeleteRetention.Milliseconds()
	}
	at = cleaned + rw.pl.cfg.DeleteRetention.Milliseconds()
	return rw.nowMs >= at, at
}

func (rw *rewriter) keepUntil(at int64) {
	if rw.nextHorizonMs == 0 || at < rw.nextHorizonMs {
		rw.nextHorizonMs = at
	}
}

// group writes the cleaned segment of the plan's segments idx.
func (rw *rewriter) group(ctx context.Context, idx []int) (*segment, error) {
	p, pl := rw.p, rw.pl
	first := pl.segs[idx[0]]
	path := segmentName(p.dir, first.base, logSuffix) + cleanedSuffix
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create cleaned segment: %w", err)
	}
	ns := &segment{base: first.base, dir: p.dir, f: f, next: first.base, maxTs: -1, created: first.created, gaps: true}
	ns.refs.Store(1)
	w := bufio.NewWriterSize(f, cleanWriteBufferBytes)
	var pos int64
	kept := map[int64]bool{} // marker offsets kept
	emit := func(b []byte) error {
		h := parseHeader(b)
		ns.maybeIndex(h, pos, pl.cfg.IndexIntervalBytes)
		if _, err := w.Write(b); err != nil {
			return err
		}
		pos += int64(len(b))
		rw.st.BytesWritten += int64(len(b))
		return rw.o.Throttle.wait(ctx, int64(len(b)))
	}
	var srcAborted []AbortedTxn
	for _, i := range idx {
		s := pl.segs[i]
		rw.st.SizeBefore += pl.sizes[i]
		srcAborted = append(srcAborted, s.aborted...)
		br := newBatchReader(ctx, s, pl.sizes[i], rw.o.Throttle, rw.st)
		for {
			h, b, err := br.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return ns, err
			}
			out, isMarker, err := rw.filter(h, b)
			if err != nil {
				return ns, err
			}
			if out == nil {
				continue
			}
			if isMarker {
				kept[h.baseOffset] = true
			}
			if err := emit(out); err != nil {
				return ns, err
			}
		}
	}
	if err := w.Flush(); err != nil {
		return ns, err
	}
	if err := f.Sync(); err != nil {
		return ns, err
	}
	ns.size = pos
	for _, a := range srcAborted {
		if kept[a.LastOffset] {
			ns.aborted = append(ns.aborted, a)
		}
	}
	rw.st.SizeAfter += pos
	if err := ns.writeIndexFilesAs(cleanedSuffix); err != nil {
		return ns, err
	}
	if err := writeFileSync(segmentName(p.dir, ns.base, txnIndexSuffix)+cleanedSuffix, encodeTxnIndex(ns.aborted)); err != nil {
		return ns, err
	}
	ns.markVerified(0, ns.size, ns.next)
	return ns, nil
}

// filter returns the batch b as it is kept (b itself, a rebuilt batch with
// fewer records, or nil if none is kept) and whether it is a kept marker.
func (rw *rewriter) filter(h header, b []byte) ([]byte, bool, error) {
	pl := rw.pl
	if h.nextOffset() <= pl.start {
		rw.st.RecordsRemoved += int64(h.recordCount)
		return nil, false, nil
	}
	if h.control() {
		hadData := rw.txnData[h.producerID]
		delete(rw.txnData, h.producerID)
		if hadData || h.baseOffset >= rw.mapEnd {
			return b, true, nil
		}
		gone, at := rw.horizon(h.baseOffset)
		if gone {
			rw.st.RecordsRemoved++
			return nil, false, nil
		}
		rw.keepUntil(at)
		return b, true, nil
	}
	if h.transactional() && rw.aborted.has(h.producerID, h.baseOffset) {
		rw.st.RecordsRemoved += int64(h.recordCount)
		return nil, false, nil
	}
	rw.recs = rw.recs[:0]
	n := int32(0)
	err := eachRecord(b, h, func(r rawRecord) error {
		off := h.baseOffset + r.delta
		keep := true
		switch {
		case off < pl.start:
			keep = false
		case off >= rw.mapEnd:
		case r.keyNull:
			keep = false // as Kafka: a compacted log has no place for keyless records
		case rw.m.get(r.key) > off:
			keep = false
		case r.valueNull:
			gone, at := rw.horizon(off)
			if gone {
				keep = false
			} else {
				rw.keepUntil(at)
			}
		}
		if keep {
			rw.recs = append(rw.recs, r.raw...)
			n++
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	rw.st.RecordsRemoved += int64(h.recordCount - n)
	if n > 0 && h.transactional() {
		rw.txnData[h.producerID] = true
	}
	switch {
	case n == 0:
		return nil, false, nil
	case n == h.recordCount:
		return b, false, nil
	}
	out, err := rebuildBatch(b, h, rw.recs, n)
	return out, false, err
}

// rebuildBatch is batch b (header h) holding only the n records recs, in
// the same codec; offsets, timestamps, producer fields and sequence stay.
func rebuildBatch(b []byte, h header, recs []byte, n int32) ([]byte, error) {
	body := recs
	if codec := h.attributes & 0x7; codec != 0 {
		var err error
		if body, err = compressRecords(codec, recs); err != nil {
			return nil, err
		}
	}
	out := make([]byte, batchHeaderLen+len(body))
	copy(out, b[:batchHeaderLen])
	copy(out[batchHeaderLen:], body)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-batchLengthOverhead))
	binary.BigEndian.PutUint32(out[57:], uint32(n))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], castagnoli))
	return out, nil
}

// compressors are franz-go's compressors, one per Kafka codec (1 gzip,
// 2 snappy, 3 lz4, 4 zstd), made once; each is safe for concurrent use.
var compressors = sync.OnceValue(func() map[int16]kgo.Compressor {
	m := map[int16]kgo.Compressor{}
	for codec, c := range map[int16]kgo.CompressionCodec{1: kgo.GzipCompression(), 2: kgo.SnappyCompression(),
		3: kgo.Lz4Compression(), 4: kgo.ZstdCompression()} {
		if comp, err := kgo.DefaultCompressor(c); err == nil {
			m[codec] = comp
		}
	}
	return m
})

// compressRecords encodes records with a Kafka codec, as the producer did.
func compressRecords(codec int16, src []byte) ([]byte, error) {
	c := compressors()[codec]
	if c == nil {
		return nil, fmt.Errorf("%w: unknown compression codec %d", ErrCorrupt, codec)
	}
	out, got := c.Compress(new(bytes.Buffer), src)
	if int16(got) != codec {
		return nil, fmt.Errorf("compressing %d bytes of records with codec %d failed", len(src), codec)
	}
	return out, nil
}

// eachRecord decodes the records of batch b (header h, whose CRC was
// checked) and calls fn for each, in order; every field is checked, so a
// record copied into a rebuilt batch is one a consumer decodes. The slices
// are valid during the call only.
func eachRecord(b []byte, h header, fn func(rawRecord) error) error {
	return decodeRecords(b, h, maxUncompressedBatchBytes, false, false, func(r rawRecord) error {
		if r.delta < 0 || r.delta > math.MaxInt32 {
			return fmt.Errorf("%w: record offset delta %d is out of range", ErrCorrupt, r.delta)
		}
		return fn(r)
	})
}

// batchReader reads the whole batches of a sealed segment in order,
// checking each one's CRC-32C: a clean never rewrites damaged bytes under
// a fresh checksum.
type batchReader struct {
	ctx  context.Context
	s    *segment
	r    *bufio.Reader
	pos  int64
	size int64
	buf  []byte
	t    *Throttle
	st   *CleanStats
}

func newBatchReader(ctx context.Context, s *segment, size int64, t *Throttle, st *CleanStats) *batchReader {
	return &batchReader{ctx: ctx, s: s, size: size, t: t, st: st,
		r: bufio.NewReaderSize(io.NewSectionReader(s.f, 0, size), recoveryReadBytes)}
}

func (br *batchReader) next() (header, []byte, error) {
	if br.pos >= br.size {
		return header{}, nil, io.EOF
	}
	var hdr [batchHeaderLen]byte
	if _, err := io.ReadFull(br.r, hdr[:]); err != nil {
		return header{}, nil, fmt.Errorf("read %s at %d: %w", br.s.path(), br.pos, err)
	}
	h := parseHeader(hdr[:])
	if err := checkHeader(h, br.size-br.pos); err != nil || h.size() > maxBatchBytes {
		return h, nil, &CorruptError{Segment: br.s.path(), Offset: h.baseOffset, Pos: br.pos, Reason: errors.Join(err, fmt.Errorf("batch of %d bytes", h.size()))}
	}
	if int64(cap(br.buf)) < h.size() {
		br.buf = make([]byte, h.size())
	}
	b := br.buf[:h.size()]
	copy(b, hdr[:])
	if _, err := io.ReadFull(br.r, b[batchHeaderLen:]); err != nil {
		return h, nil, fmt.Errorf("read %s at %d: %w", br.s.path(), br.pos, err)
	}
	if _, err := checkBatch(b, true); err != nil {
		return h, nil, &CorruptError{Segment: br.s.path(), Offset: h.baseOffset, Pos: br.pos, Reason: err}
	}
	br.pos += h.size()
	br.st.BytesRead += h.size()
	if err := br.t.wait(br.ctx, h.size()); err != nil {
		return h, nil, err
	}
	return h, b, nil
}
