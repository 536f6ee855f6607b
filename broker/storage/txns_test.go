package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// txnBatch is idemBatch with the transactional attribute.
func txnBatch(id int64, epoch int16, seq int32, values ...string) []byte {
	b := idemBatch(id, epoch, seq, values...)
	binary.BigEndian.PutUint16(b[21:], attrTransactional)
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}

func marker(t *testing.T, p *Partition, id int64, epoch int16, commit bool) int64 {
	t.Helper()
	next, err := p.AppendMarker(Marker{ProducerID: id, ProducerEpoch: epoch, Commit: commit, CoordinatorEpoch: 0}, time.Now())
	if err != nil {
		t.Fatalf("marker: %v", err)
	}
	if err := p.Sync(next); err != nil {
		t.Fatal(err)
	}
	return next - 1
}

// readUpTo returns the base offsets of the batches a read_committed
// consumer is served from offset 0.
func readUpTo(t *testing.T, p *Partition, upto int64) []int64 {
	t.Helper()
	var out []int64
	for off := p.StartOffset(); off < upto; {
		sec, err := p.ReadUpTo(off, 1<<20, upto)
		if err != nil {
			t.Fatal(err)
		}
		if sec.Len == 0 {
			t.Fatalf("nothing served at %d below %d", off, upto)
		}
		buf := make([]byte, sec.Len)
		sec.File.ReadAt(buf, sec.Pos)
		sec.Release()
		for len(buf) > 0 {
			h, err := checkBatch(buf, true)
			if err != nil {
				t.Fatal(err)
			}
			if h.baseOffset >= upto {
				t.Fatalf("served batch at %d past %d", h.baseOffset, upto)
			}
			out = append(out, h.baseOffset)
			off = h.nextOffset()
			buf = buf[h.size():]
		}
	}
	return out
}

func TestTransactionsOnAPartition(t *testing.T) {
	p := openT(t, t.TempDir(), Config{}, true)
	appendExpect(t, p, makeBatch(1000, "a"), 0, false)
	appendExpect(t, p, txnBatch(7, 0, 0, "x", "y"), 1, false)
	if got := p.LastStableOffset(); got != 1 {
		t.Fatalf("LSO with a transaction open at 1: %d", got)
	}
	appendExpect(t, p, makeBatch(1000, "b"), 3, false)
	appendExpect(t, p, txnBatch(8, 0, 0, "z"), 4, false)
	if got := fmt.Sprint(readUpTo(t, p, p.LastStableOffset())); got != "[0]" {
		t.Fatalf("read_committed read below LSO served %s", got)
	}
	if p.OpenTxns() != 2 {
		t.Fatalf("open transactions: %d", p.OpenTxns())
	}
	if off := marker(t, p, 7, 0, true); off != 5 {
		t.Fatalf("commit marker at %d", off)
	}
	if got := p.LastStableOffset(); got != 4 {
		t.Fatalf("LSO after committing the first transaction: %d", got)
	}
	if off := marker(t, p, 8, 0, false); off != 6 {
		t.Fatalf("abort marker at %d", off)
	}
	if got := p.LastStableOffset(); got != 7 || p.OpenTxns() != 0 {
		t.Fatalf("LSO after both ended: %d (open %d)", got, p.OpenTxns())
	}
	want := fmt.Sprint([]AbortedTxn{{ProducerID: 8, FirstOffset: 4, LastOffset: 6, LastStable: 7}})
	if got := fmt.Sprint(p.AbortedTxns(0, 7)); got != want {
		t.Fatalf("aborted: %s, want %s", got, want)
	}
	if got := p.AbortedTxns(0, 4); len(got) != 0 {
		t.Fatalf("aborted txn reported for a range before it: %v", got)
	}
	if got := p.AbortedTxns(7, 7); len(got) != 0 {
		t.Fatalf("aborted txn reported for a range after it: %v", got)
	}
	if got := fmt.Sprint(readUpTo(t, p, 7)); got != "[0 1 3 4 5 6]" {
		t.Fatalf("read everything: %s", got)
	}

	// Producer 7 keeps its sequence across transactions of one epoch.
	appendExpect(t, p, txnBatch(7, 0, 2, "w"), 7, false)
	// An abort under a bumped epoch (the coordinator fencing a zombie)
	// fences epoch 0 here.
	marker(t, p, 7, 1, false)
	if _, _, err := p.Append(txnBatch(7, 0, 3, "late"), time.Now()); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("append from the fenced epoch: %v", err)
	}
	// The new epoch starts anywhere (only a marker is known of it).
	appendExpect(t, p, txnBatch(7, 2, 0, "new"), 9, false)
	if got := p.LastStableOffset(); got != 9 {
		t.Fatalf("LSO: %d", got)
	}
}

// copyDir copies a partition directory as a crash would leave it: what
// was written, without anything Close writes.
func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// TestTransactionStateSurvivesReopen checks the open transactions, the LSO
// and the aborted transactions come back after a clean close and after a
// crash, across segment rolls.
func TestTransactionStateSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	p, err := OpenPartition(dir, quietConfig(Config{SegmentBytes: 400}), true)
	if err != nil {
		t.Fatal(err)
	}
	var seq [4]int32
	for i := range 12 {
		id := int64(i % 4)
		appendExpect(t, p, txnBatch(id, 0, seq[id], "v"), p.EndOffset(), false)
		seq[id]++
		if i%3 == 2 {
			marker(t, p, id, 0, i%2 == 0)
		}
	}
	// Producers 1, 2 and 3 have a transaction open.
	appendExpect(t, p, txnBatch(3, 0, seq[3], "open"), p.EndOffset(), false)
	seq[3]++
	if err := p.Sync(p.EndOffset()); err != nil {
		t.Fatal(err)
	}
	wantLSO, wantAborted := p.LastStableOffset(), fmt.Sprint(p.AbortedTxns(0, p.EndOffset()))
	if wantLSO == p.EndOffset() || wantAborted == "[]" {
		t.Fatalf("test setup: LSO %d end %d aborted %s", wantLSO, p.EndOffset(), wantAborted)
	}
	segs, _ := listSegments(dir)
	if len(segs) < 3 {
		t.Fatalf("test setup: %d segments", len(segs))
	}
	crashed := copyDir(t, dir)
	lost := copyDir(t, dir)
	for _, base := range segs {
		os.Remove(segmentName(lost, base, txnIndexSuffix))
		os.Remove(snapshotName(lost, base))
	}
	os.WriteFile(segmentName(lost, segs[0], txnIndexSuffix), []byte("torn"), 0o644)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for name, reopen := range map[string]func() *Partition{
		"clean":         func() *Partition { return openT(t, dir, Config{SegmentBytes: 400}, true) },
		"crash":         func() *Partition { return openT(t, crashed, Config{SegmentBytes: 400}, false) },
		"lost txnindex": func() *Partition { return openT(t, lost, Config{SegmentBytes: 400}, false) },
	} {
		t.Run(name, func(t *testing.T) {
			q := reopen()
			if got := q.LastStableOffset(); got != wantLSO {
				t.Fatalf("LSO %d, want %d", got, wantLSO)
			}
			if got := fmt.Sprint(q.AbortedTxns(0, q.EndOffset())); got != wantAborted {
				t.Fatalf("aborted %s, want %s", got, wantAborted)
			}
			// The open transactions can still be ended, and then the LSO
			// reaches the end.
			for id := range int64(4) {
				marker(t, q, id, 0, false)
			}
			if q.LastStableOffset() != q.EndOffset() {
				t.Fatalf("LSO %d after the last abort, end %d", q.LastStableOffset(), q.EndOffset())
			}
		})
	}
}

func TestRetentionDeletesTxnIndex(t *testing.T) {
	dir := t.TempDir()
	p := openT(t, dir, Config{SegmentBytes: 300, RetentionBytes: 600}, true)
	var seq int32
	for range 10 {
		appendExpect(t, p, txnBatch(1, 0, seq, "v"), p.EndOffset(), false)
		seq++
		marker(t, p, 1, 0, false)
	}
	first := p.AbortedTxns(0, p.EndOffset())
	if len(first) != 10 {
		t.Fatalf("aborted: %v", first)
	}
	before, _ := listSegments(dir)
	if _, err := os.Stat(segmentName(dir, before[0], txnIndexSuffix)); err != nil {
		t.Fatalf("sealed segment without its txnindex: %v", err)
	}
	n, err := p.EnforceRetention(time.Now())
	if err != nil || n == 0 {
		t.Fatalf("retention deleted %d: %v", n, err)
	}
	if _, err := os.Stat(segmentName(dir, before[0], txnIndexSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("txnindex of a deleted segment left behind: %v", err)
	}
	left := p.AbortedTxns(0, p.EndOffset())
	if len(left) == 0 || len(left) >= 10 || left[0].LastOffset < p.StartOffset() {
		t.Fatalf("after retention from %d: %v", p.StartOffset(), left)
	}
}

func TestTxnIndexDecode(t *testing.T) {
	good := []AbortedTxn{{1, 10, 12, 13}, {2, 11, 14, 15}}
	data := encodeTxnIndex(good)
	if got, ok := decodeTxnIndex(data, 10, 20); !ok || fmt.Sprint(got) != fmt.Sprint(good) {
		t.Fatalf("round trip: %v %v", got, ok)
	}
	if got, ok := decodeTxnIndex(data, 10, 13); !ok || len(got) != 1 {
		t.Fatalf("entries past the segment end should be dropped: %v %v", got, ok)
	}
	if _, ok := decodeTxnIndex(data[:40], 10, 20); ok {
		t.Fatal("torn file accepted")
	}
	if _, ok := decodeTxnIndex(encodeTxnIndex([]AbortedTxn{{1, 12, 10, 13}}), 0, 20); ok {
		t.Fatal("first offset after last accepted")
	}
}

// FuzzTxnIndex feeds arbitrary bytes to the .txnindex decoder: no panic,
// and what it accepts re-encodes to entries it accepts again.
func FuzzTxnIndex(f *testing.F) {
	f.Add(encodeTxnIndex([]AbortedTxn{{1, 10, 12, 13}, {2, 11, 14, 15}}))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := decodeTxnIndex(data, 10, 1000)
		if !ok {
			return
		}
		again, ok := decodeTxnIndex(encodeTxnIndex(got), 10, 1000)
		if !ok || fmt.Sprint(again) != fmt.Sprint(got) {
			t.Fatalf("re-decode: %v %v", again, ok)
		}
	})
}

// TestReadUpToStopsAtTheLSO reads below an open transaction from every
// offset, with a dense index, so the stop is found from an index entry.
func TestReadUpToStopsAtTheLSO(t *testing.T) {
	p := openT(t, t.TempDir(), Config{IndexIntervalBytes: 200}, true)
	for range 40 {
		appendExpect(t, p, makeBatch(1000, "a", "b"), p.EndOffset(), false)
	}
	appendExpect(t, p, txnBatch(1, 0, 0, "t"), 80, false)
	for range 40 {
		appendExpect(t, p, makeBatch(1000, "c"), p.EndOffset(), false)
	}
	lso := p.LastStableOffset()
	if lso != 80 {
		t.Fatalf("LSO %d", lso)
	}
	for from := int64(0); from < lso; from += 7 {
		sec, err := p.ReadUpTo(from, 1<<20, lso)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, sec.Len)
		sec.File.ReadAt(buf, sec.Pos)
		sec.Release()
		if sec.Next != lso {
			t.Fatalf("section from %d says it ends at %d, want %d", from, sec.Next, lso)
		}
		var last int64 = -1
		for len(buf) > 0 {
			h, err := checkBatch(buf, true)
			if err != nil {
				t.Fatal(err)
			}
			last = h.nextOffset()
			buf = buf[h.size():]
		}
		if last != lso {
			t.Fatalf("read from %d ended at %d, want the LSO %d", from, last, lso)
		}
	}
	if sec, _ := p.ReadUpTo(lso, 1<<20, lso); sec.Len != 0 {
		t.Fatal("read at the LSO returned data")
	}
	// A byte limit: the section ends before the batch it did not take.
	sec, err := p.ReadUpTo(0, 100, lso)
	if err != nil || sec.Next != 2 {
		t.Fatalf("one batch from 0: next %d, %v", sec.Next, err)
	}
	sec.Release()
}

// TestSnapshotVersion1StillReads: snapshots written before transactions
// (no open-transaction offset) load with no transaction open.
func TestSnapshotVersion1StillReads(t *testing.T) {
	b := append([]byte(snapshotMagic), 1)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint64(b, 42)   // producer id
	b = binary.BigEndian.AppendUint16(b, 3)    // epoch
	b = binary.BigEndian.AppendUint64(b, 1234) // last seen
	b = append(b, 1)
	b = binary.BigEndian.AppendUint32(b, 0) // first seq
	b = binary.BigEndian.AppendUint32(b, 4) // last seq
	b = binary.BigEndian.AppendUint64(b, 10)
	b = binary.BigEndian.AppendUint32(b, 4)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	s, err := decodeProducerSnapshot(b, 100)
	if err != nil {
		t.Fatal(err)
	}
	e := s.m[42]
	if e == nil || e.epoch != 3 || e.txnFirst != -1 || len(e.batches) != 1 || s.firstUnstable() != -1 {
		t.Fatalf("decoded %+v", e)
	}
}
