package storage

import (
	"encoding/binary"
	"os"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

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
		return Section{}, p.closedErr()
	}
	if offset < p.logStart() || offset > p.end {
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
	// A cleaned segment may end before the next one starts, or hold
	// nothing at all (clean.go): the offset is then in the next one.
	for i < len(p.segs)-1 && (offset >= p.segs[i].next || p.segs[i].size == 0) {
		i++
	}
	seg := p.segs[i]
	size, index, next := seg.size, seg.index, seg.next
	seg.acquire()
	p.mu.RUnlock()

	if upto >= next {
		upto = -1 // the whole segment is below it
	}
	sec, err := p.readChecked(seg, offset, maxBytes, size, index, next, upto)
	if err != nil || sec.Len == 0 {
		seg.release()
		return Section{}, err
	}
	sec.seg = seg
	return sec, nil
}

// OffsetForTime returns the offset and timestamp of the first record whose
// timestamp is at least ts, or -1, -1 if there is none. In a compressed
// batch it returns the batch's first offset and max timestamp instead of
// decompressing.
func (p *Partition) OffsetForTime(ts int64) (offset, timestamp int64, err error) {
	offset, timestamp, start, err := p.offsetForTime(ts)
	if err == nil && offset >= 0 {
		// A segment may still hold records below a start DeleteRecords
		// set; those are gone as far as clients are concerned.
		offset = max(offset, start)
	}
	return offset, timestamp, err
}

// offsetForTime is OffsetForTime without the clamp to the log start, which
// it returns as it saw it.
func (p *Partition) offsetForTime(ts int64) (offset, timestamp, start int64, err error) {
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return -1, -1, 0, p.closedErr()
	}
	start = p.logStart()
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
		return -1, -1, start, nil
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
			return -1, -1, start, err
		}
		if err := checkHeader(h, size-pos); err != nil {
			// A damaged length would send the walk anywhere.
			return -1, -1, start, &CorruptError{Segment: seg.path(), Offset: h.baseOffset, Pos: pos, Reason: err}
		}
		if h.maxTimestamp < ts {
			pos += h.size()
			continue
		}
		if h.compressed() || h.size() > maxBatchBytes {
			return h.baseOffset, h.maxTimestamp, start, nil
		}
		batch := make([]byte, h.size())
		if _, err := seg.f.ReadAt(batch, pos); err != nil {
			return -1, -1, start, err
		}
		if off, rts, ok := firstRecordAtOrAfter(batch, h, ts); ok {
			return off, rts, start, nil
		}
		return h.baseOffset, h.maxTimestamp, start, nil
	}
	return -1, -1, start, nil
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
