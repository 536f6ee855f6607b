package storage

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Transactions, partition side (KIP-98). A transactional producer's batches
// carry the transactional attribute; the first one on a partition opens the
// producer's transaction there, and a marker written by the transaction
// coordinator (AppendMarker: a control batch whose one record's key says
// COMMIT or ABORT) closes it. The partition keeps:
//
//   - the first offset of each open transaction (in the producer state, so
//     snapshots and log replay restore it like the idempotent state);
//   - the last stable offset: the first offset of the oldest open
//     transaction, or the log end when none is open. A read_committed
//     consumer reads only below it;
//   - the aborted transactions: for each ABORT marker of a transaction that
//     wrote here, the producer id, the transaction's first offset and the
//     marker's offset, kept with the segment holding the marker in a
//     ".txnindex" file as Kafka does, and deleted with it by retention.
//     A read_committed consumer uses them to drop aborted records.
//
// The sealed segments' .txnindex files are written (fsynced) at roll; the
// active segment's at clean close. After an unclean stop the active
// segment's entries are rebuilt by the same replay that rebuilds the
// producer state, so they always match the log.

// AbortedTxn is one aborted transaction on a partition.
type AbortedTxn struct {
	ProducerID  int64
	FirstOffset int64 // the transaction's first batch on this partition
	LastOffset  int64 // its ABORT marker
	// LastStable is the last stable offset right after the marker; a
	// search for aborted transactions before it can stop there (no
	// transaction still open then started earlier).
	LastStable int64
}

// Marker is a transaction marker to write.
type Marker struct {
	ProducerID       int64
	ProducerEpoch    int16
	Commit           bool
	CoordinatorEpoch int32
}

const (
	txnIndexSuffix   = ".txnindex"
	txnIndexEntryLen = 4 * 8
	// controlAttrs marks a batch as transactional and control.
	controlAttrs = attrTransactional | attrControl
)

// markerBatch encodes a marker as Kafka writes it: a control batch of one
// record whose key is the control type (version 0, ABORT 0 or COMMIT 1) and
// whose value is the end-transaction marker (version 0, coordinator epoch).
// Its base offset is patched at append.
func markerBatch(m Marker, nowMs int64) []byte {
	typ := kmsg.ControlRecordKeyTypeAbort
	if m.Commit {
		typ = kmsg.ControlRecordKeyTypeCommit
	}
	key := kmsg.ControlRecordKey{Version: 0, Type: typ}
	val := kmsg.EndTxnMarker{Version: 0, CoordinatorEpoch: m.CoordinatorEpoch}
	r := kmsg.NewRecord()
	r.Key, r.Value = key.AppendTo(nil), val.AppendTo(nil)
	r.Length = int32(len(r.AppendTo(nil)) - 1) // AppendTo wrote Length 0 as one byte
	rb := kmsg.NewRecordBatch()
	rb.Magic = 2
	rb.Attributes = controlAttrs
	rb.FirstTimestamp, rb.MaxTimestamp = nowMs, nowMs
	rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = m.ProducerID, m.ProducerEpoch, -1
	rb.NumRecords = 1
	rb.Records = r.AppendTo(nil)
	rb.Length = int32(batchHeaderLen - batchLengthOverhead + len(rb.Records))
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}

// readMarker reads the control record of the marker batch h at pos and
// reports whether it is a COMMIT.
func (s *segment) readMarker(pos int64, h header) (bool, error) {
	if h.size() > maxBatchBytes || h.compressed() {
		return false, fmt.Errorf("control batch at offset %d is compressed or too large", h.baseOffset)
	}
	b := make([]byte, h.size())
	if _, err := s.f.ReadAt(b, pos); err != nil {
		return false, fmt.Errorf("read control batch at offset %d: %w", h.baseOffset, err)
	}
	rest := b[batchHeaderLen:]
	l, n := binary.Varint(rest)
	if n <= 0 || l < 0 || int64(n)+l > int64(len(rest)) {
		return false, fmt.Errorf("control batch at offset %d: bad record", h.baseOffset)
	}
	var r kmsg.Record
	if err := r.ReadFrom(rest[:int64(n)+l]); err != nil {
		return false, fmt.Errorf("control batch at offset %d: %w", h.baseOffset, err)
	}
	var key kmsg.ControlRecordKey
	if err := key.ReadFrom(r.Key); err != nil {
		return false, fmt.Errorf("control batch at offset %d: key: %w", h.baseOffset, err)
	}
	return key.Type == kmsg.ControlRecordKeyTypeCommit, nil
}

// applyMarker updates the producer state for a marker at offset and, for
// an abort of a transaction that wrote here, records it with seg.
func (p *Partition) applyMarker(seg *segment, id int64, epoch int16, commit bool, offset, nowMs int64) {
	first := p.producers.marker(id, epoch, nowMs)
	if commit || first < 0 {
		return
	}
	stable := p.producers.firstUnstable()
	if stable < 0 {
		stable = offset + 1
	}
	seg.aborted = append(seg.aborted, AbortedTxn{ProducerID: id, FirstOffset: first, LastOffset: offset, LastStable: stable})
}

// AppendMarker writes a transaction marker for m's producer, ending its
// transaction on this partition (if it wrote here) and fencing older
// epochs. Call Sync(next) to make it durable.
func (p *Partition) AppendMarker(m Marker, now time.Time) (next int64, err error) {
	b := markerBatch(m, now.UnixMilli())
	h := parseHeader(b)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, p.closedErr()
	}
	oldLSO := p.lso()
	seg, err := p.activeFor(int64(len(b)), now)
	if err != nil {
		return 0, err
	}
	off := p.end
	patchBatch(b, off)
	h.baseOffset = off
	if err := p.write(seg, b, []header{h}); err != nil {
		return 0, err
	}
	p.applyMarker(seg, m.ProducerID, m.ProducerEpoch, m.Commit, off, now.UnixMilli())
	p.notify(p.lso() != oldLSO)
	return p.end, nil
}

// lso is the last stable offset; the caller holds p.mu.
func (p *Partition) lso() int64 {
	p.assertLocked()
	if first := p.producers.firstUnstable(); first >= 0 {
		// Retention may have deleted the start of a transaction that is
		// still open; nothing before the log start can be read anyway.
		return max(first, p.logStart())
	}
	return p.end
}

// LastStableOffset is the offset below which every transaction is decided:
// the first offset of the oldest open transaction, or the log end.
func (p *Partition) LastStableOffset() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.lso()
}

// OpenTxns is the number of producers with an open transaction here.
func (p *Partition) OpenTxns() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.producers.ongoing)
}

// AbortedTxns returns the aborted transactions that overlap the offsets
// from (inclusive) to upto (exclusive), as a read_committed fetch of that
// range needs them, oldest marker first.
func (p *Partition) AbortedTxns(from, upto int64) []AbortedTxn {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []AbortedTxn
	for _, seg := range p.segs {
		if seg.next <= from {
			continue
		}
		for _, a := range seg.aborted {
			if a.LastOffset >= from && a.FirstOffset < upto {
				out = append(out, a)
			}
			if a.LastStable >= upto {
				// Every transaction open at upto was decided by here.
				return out
			}
		}
	}
	return out
}

// loadTxnIndex reads the segment's aborted transactions. A missing file
// means none (logs written before transactions have none). Entries past
// the segment's end (a torn tail cut by recovery) are dropped; anything
// else malformed sets txnIndexBad, and the open rebuilds the entries from
// the log.
func (s *segment) loadTxnIndex() error {
	data, err := os.ReadFile(segmentName(s.dir, s.base, txnIndexSuffix))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	entries, ok := decodeTxnIndex(data, s.base, s.next)
	s.aborted, s.txnIndexBad = entries, !ok
	return nil
}

// decodeTxnIndex parses a .txnindex file of the segment [base, next). It
// returns the entries that are valid and whether the whole file was.
func decodeTxnIndex(data []byte, base, next int64) ([]AbortedTxn, bool) {
	var out []AbortedTxn
	for len(data) >= txnIndexEntryLen {
		a := AbortedTxn{
			ProducerID:  int64(binary.BigEndian.Uint64(data)),
			FirstOffset: int64(binary.BigEndian.Uint64(data[8:])),
			LastOffset:  int64(binary.BigEndian.Uint64(data[16:])),
			LastStable:  int64(binary.BigEndian.Uint64(data[24:])),
		}
		data = data[txnIndexEntryLen:]
		if a.LastOffset >= next {
			continue // cut off by recovery
		}
		if a.ProducerID < 0 || a.FirstOffset < 0 || a.FirstOffset > a.LastOffset || a.LastOffset < base ||
			a.LastStable < 0 || a.LastStable > a.LastOffset+1 || (len(out) > 0 && a.LastOffset <= out[len(out)-1].LastOffset) {
			return nil, false
		}
		out = append(out, a)
	}
	return out, len(data) == 0
}

func encodeTxnIndex(entries []AbortedTxn) []byte {
	b := make([]byte, 0, len(entries)*txnIndexEntryLen)
	for _, a := range entries {
		b = binary.BigEndian.AppendUint64(b, uint64(a.ProducerID))
		b = binary.BigEndian.AppendUint64(b, uint64(a.FirstOffset))
		b = binary.BigEndian.AppendUint64(b, uint64(a.LastOffset))
		b = binary.BigEndian.AppendUint64(b, uint64(a.LastStable))
	}
	return b
}

// writeTxnIndex persists the segment's aborted transactions (fsynced, by
// rename). A segment without any has no file.
func (s *segment) writeTxnIndex() error {
	path := segmentName(s.dir, s.base, txnIndexSuffix)
	if len(s.aborted) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		s.txnIndexBad = false
		return nil
	}
	if err := writeFileSync(path, encodeTxnIndex(s.aborted)); err != nil {
		return fmt.Errorf("write transaction index: %w", err)
	}
	s.txnIndexBad = false
	return nil
}

// BatchProducer reads the producer fields of the first batch in b as a
// client sent it: ok is false when b is too short to hold a batch header
// (the append refuses it anyway).
func BatchProducer(b []byte) (producerID int64, epoch int16, transactional, ok bool) {
	if len(b) < batchHeaderLen {
		return -1, -1, false, false
	}
	h := parseHeader(b)
	return h.producerID, h.producerEpoch, h.transactional(), true
}

// ProducerInfo is one producer's state on a partition (DescribeProducers).
type ProducerInfo struct {
	ProducerID     int64
	Epoch          int16
	LastSequence   int32 // -1 when only a marker is known of this epoch
	LastSeenMs     int64 // broker time of its last append, Unix ms
	TxnStartOffset int64 // first offset of its open transaction, -1 if none
}

// ActiveProducers lists the producers the partition tracks, by id.
func (p *Partition) ActiveProducers() []ProducerInfo {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]ProducerInfo, 0, len(p.producers.m))
	for id, e := range p.producers.m {
		last := int32(-1)
		if len(e.batches) > 0 {
			last = e.lastSeq()
		}
		out = append(out, ProducerInfo{ProducerID: id, Epoch: e.epoch, LastSequence: last, LastSeenMs: e.lastSeen, TxnStartOffset: e.txnFirst})
	}
	slices.SortFunc(out, func(a, b ProducerInfo) int { return cmp.Compare(a.ProducerID, b.ProducerID) })
	return out
}
