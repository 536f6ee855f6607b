package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"testing"
	"time"
)

// idemBatch is makeBatch from an idempotent producer: id, epoch and the
// sequence of the first record.
func idemBatch(id int64, epoch int16, seq int32, values ...string) []byte {
	b := makeBatch(1000, values...)
	binary.BigEndian.PutUint64(b[43:], uint64(id))
	binary.BigEndian.PutUint16(b[51:], uint16(epoch))
	binary.BigEndian.PutUint32(b[53:], uint32(seq))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}

func vals(n int) []string {
	v := make([]string, n)
	for i := range v {
		v[i] = fmt.Sprint(i)
	}
	return v
}

// step is one batch offered to the producer state, and what must happen.
type step struct {
	id    int64
	epoch int16
	seq   int32
	n     int32 // records
	want  string
}

// Outcomes: "append@O" (written at offset O), "dup@O" (a retry of the batch
// at O), "ooo", "epoch".
func runSteps(t *testing.T, steps []step) {
	t.Helper()
	s := newProducerStates()
	end := int64(0)
	for i, st := range steps {
		h := header{baseOffset: end, producerID: st.id, producerEpoch: st.epoch, baseSequence: st.seq, lastOffsetDelta: st.n - 1, recordCount: st.n}
		dup, isDup, err := s.check(h)
		var got string
		switch {
		case errors.Is(err, ErrOutOfOrderSequence):
			got = "ooo"
		case errors.Is(err, ErrInvalidProducerEpoch):
			got = "epoch"
		case err != nil:
			t.Fatalf("step %d: unexpected error %v", i, err)
		case isDup:
			got = fmt.Sprintf("dup@%d", dup.firstOffset)
		default:
			got = fmt.Sprintf("append@%d", end)
			s.add(h, 0)
			end += int64(st.n)
		}
		if got != st.want {
			t.Fatalf("step %d (id %d epoch %d seq %d n %d): got %s, want %s (err %v)", i, st.id, st.epoch, st.seq, st.n, got, st.want, err)
		}
	}
}

// TestSequenceRules drives the producer state machine without a log, step
// by step, through the cases Kafka's ProducerStateManager decides.
func TestSequenceRules(t *testing.T) {
	cases := []struct {
		name  string
		steps []step
	}{
		{"in order", []step{
			{1, 0, 0, 3, "append@0"}, {1, 0, 3, 2, "append@3"}, {1, 0, 5, 1, "append@5"},
		}},
		{"retry of the last batch is a duplicate", []step{
			{1, 0, 0, 3, "append@0"}, {1, 0, 0, 3, "dup@0"}, {1, 0, 3, 1, "append@3"}, {1, 0, 3, 1, "dup@3"},
		}},
		{"retries of any of the last five batches are duplicates", []step{
			{1, 0, 0, 1, "append@0"}, {1, 0, 1, 1, "append@1"}, {1, 0, 2, 1, "append@2"},
			{1, 0, 3, 1, "append@3"}, {1, 0, 4, 1, "append@4"}, {1, 0, 5, 1, "append@5"},
			{1, 0, 1, 1, "dup@1"}, {1, 0, 5, 1, "dup@5"},
			// seq 0 fell out of the window: too old to tell, Kafka says OOOSN
			{1, 0, 0, 1, "ooo"},
		}},
		{"same first sequence but another length is not a duplicate", []step{
			{1, 0, 0, 3, "append@0"}, {1, 0, 0, 2, "ooo"},
		}},
		{"gap", []step{
			{1, 0, 0, 3, "append@0"}, {1, 0, 4, 1, "ooo"}, {1, 0, 3, 1, "append@3"},
		}},
		{"unknown producer accepts any sequence (KIP-360)", []step{
			{7, 0, 42, 2, "append@0"}, {7, 0, 44, 1, "append@2"}, {7, 0, 46, 1, "ooo"},
		}},
		{"producers are independent", []step{
			{1, 0, 0, 2, "append@0"}, {2, 0, 0, 2, "append@2"}, {1, 0, 2, 1, "append@4"}, {2, 0, 0, 2, "dup@2"},
		}},
		{"older epoch is fenced", []step{
			{1, 0, 0, 1, "append@0"}, {1, 1, 0, 1, "append@1"}, {1, 0, 1, 1, "epoch"}, {1, 0, 0, 1, "epoch"},
		}},
		{"newer epoch restarts at sequence 0 only", []step{
			{1, 0, 0, 5, "append@0"}, {1, 1, 5, 1, "ooo"}, {1, 1, 0, 1, "append@5"},
			// the old epoch's batches are forgotten: not duplicates any more
			{1, 1, 1, 1, "append@6"},
		}},
		{"sequence wraps at MaxInt32", []step{
			{1, 0, math.MaxInt32 - 2, 3, "append@0"}, // last seq MaxInt32
			{1, 0, 0, 2, "append@3"},
			{1, 0, math.MaxInt32 - 2, 3, "dup@0"},
			{1, 0, 2, 1, "append@5"},
		}},
		{"batch that wraps inside itself", []step{
			{1, 0, math.MaxInt32 - 1, 4, "append@0"}, // seqs Max-1, Max, 0, 1
			{1, 0, math.MaxInt32 - 1, 4, "dup@0"},
			{1, 0, 2, 1, "append@4"},
			{1, 0, 0, 1, "ooo"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runSteps(t, c.steps) })
	}
}

func TestLastSequence(t *testing.T) {
	for _, c := range []struct{ first, delta, want int32 }{
		{0, 0, 0}, {0, 9, 9}, {math.MaxInt32, 0, math.MaxInt32}, {math.MaxInt32, 1, 0},
		{math.MaxInt32 - 1, 3, 1}, {5, math.MaxInt32 - 5, math.MaxInt32}, {6, math.MaxInt32 - 5, 0},
	} {
		if got := lastSequence(c.first, c.delta); got != c.want {
			t.Errorf("lastSequence(%d, %d) = %d, want %d", c.first, c.delta, got, c.want)
		}
	}
}

func TestProducerExpiry(t *testing.T) {
	s := newProducerStates()
	s.add(header{producerID: 1, lastOffsetDelta: 0}, 1000)
	s.add(header{producerID: 2, lastOffsetDelta: 0}, 5000)
	if n := s.expire(2000); n != 1 || s.m[1] != nil || s.m[2] == nil {
		t.Fatalf("expired %d, left %v", n, s.m)
	}
}

func appendExpect(t *testing.T, p *Partition, b []byte, base int64, dup bool) {
	t.Helper()
	r, err := p.AppendBatches(b, time.Now())
	if err != nil || r.Base != base || r.Duplicate != dup {
		t.Fatalf("append: %+v %v; want base %d duplicate %v", r, err, base, dup)
	}
}

func TestIdempotentAppend(t *testing.T) {
	p := openT(t, t.TempDir(), Config{}, true)
	appendExpect(t, p, idemBatch(3, 0, 0, "a", "b"), 0, false)
	appendExpect(t, p, makeBatch(1, "plain"), 2, false)
	appendExpect(t, p, idemBatch(3, 0, 2, "c"), 3, false)
	// A retry gets the first try's offsets and writes nothing.
	r, err := p.AppendBatches(idemBatch(3, 0, 0, "a", "b"), time.Now())
	if err != nil || !r.Duplicate || r.Base != 0 || r.Next != 2 {
		t.Fatalf("retry: %+v %v", r, err)
	}
	if p.EndOffset() != 4 || fmt.Sprint(readAll(t, p)) != "[0 2 3]" {
		t.Fatalf("log holds %v, end %d", readAll(t, p), p.EndOffset())
	}
	if _, _, err := p.Append(idemBatch(3, 0, 9, "x"), time.Now()); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("gap: %v", err)
	}
	two := append(idemBatch(4, 0, 0, "x"), idemBatch(4, 0, 1, "y")...)
	if _, _, err := p.Append(two, time.Now()); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("two idempotent batches in one append: %v", err)
	}
	txn := makeBatch(1000, "t")
	binary.BigEndian.PutUint16(txn[21:], attrTransactional)
	binary.BigEndian.PutUint32(txn[17:], crc32.Checksum(txn[21:], castagnoli))
	if _, _, err := p.Append(txn, time.Now()); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("transactional batch without a producer id: %v", err)
	}
	ctl := idemBatch(5, 0, 0, "t")
	binary.BigEndian.PutUint16(ctl[21:], attrTransactional|attrControl)
	binary.BigEndian.PutUint32(ctl[17:], crc32.Checksum(ctl[21:], castagnoli))
	if _, _, err := p.Append(ctl, time.Now()); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("control batch from a client: %v", err)
	}
	if p.EndOffset() != 4 || p.Producers() != 1 || p.MaxProducerID() != 3 {
		t.Fatalf("refused appends changed the partition: end %d, producers %d", p.EndOffset(), p.Producers())
	}
}

// TestProducerStateSurvivesReopen writes with two producers, then reopens
// the partition in every way a broker can come back, and checks retries of
// the batches before the stop are still recognised.
func TestProducerStateSurvivesReopen(t *testing.T) {
	write := func(t *testing.T, cfg Config) string {
		dir := t.TempDir()
		p, err := OpenPartition(dir, quietConfig(cfg), true)
		if err != nil {
			t.Fatal(err)
		}
		for i := range int32(20) {
			appendExpect(t, p, idemBatch(1, 0, 3*i, vals(3)...), int64(5*i), false)
			appendExpect(t, p, idemBatch(2, 0, 2*i, vals(2)...), int64(5*i+3), false)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	removeSnapshots := func(t *testing.T, dir string, keep int) {
		offs, err := listSnapshots(dir)
		if err != nil {
			t.Fatal(err)
		}
		for len(offs) > keep {
			os.Remove(snapshotName(dir, offs[len(offs)-1]))
			offs = offs[:len(offs)-1]
		}
	}
	cases := []struct {
		name   string
		cfg    Config
		clean  bool
		damage func(t *testing.T, dir string)
	}{
		{"clean", Config{}, true, nil},
		{"unclean", Config{}, false, nil},
		{"no snapshot: full replay", Config{}, false, func(t *testing.T, dir string) { removeSnapshots(t, dir, 0) }},
		{"rolled segments, close snapshot lost", Config{SegmentBytes: 1024}, false, func(t *testing.T, dir string) { removeSnapshots(t, dir, 1) }},
		{"damaged snapshot", Config{}, true, func(t *testing.T, dir string) {
			offs, _ := listSnapshots(dir)
			os.WriteFile(snapshotName(dir, offs[len(offs)-1]), []byte("SLPS garbage"), 0o644)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := write(t, c.cfg)
			if c.damage != nil {
				c.damage(t, dir)
			}
			p := openT(t, dir, c.cfg, c.clean)
			if p.Producers() != 2 {
				t.Fatalf("tracks %d producers", p.Producers())
			}
			appendExpect(t, p, idemBatch(1, 0, 57, vals(3)...), 95, true)
			appendExpect(t, p, idemBatch(2, 0, 36, vals(2)...), 93, true)
			appendExpect(t, p, idemBatch(1, 0, 51, vals(3)...), 85, true)
			if _, _, err := p.Append(idemBatch(1, 0, 61, "gap"), time.Now()); !errors.Is(err, ErrOutOfOrderSequence) {
				t.Fatalf("gap after reopen: %v", err)
			}
			appendExpect(t, p, idemBatch(1, 0, 60, "next"), 100, false)
			if len(readAll(t, p)) != 41 {
				t.Fatalf("log holds %d batches", len(readAll(t, p)))
			}
		})
	}
}

// TestTornTailLeavesConsistentState cuts the last batch after a crash: its
// retry must be written again, not taken for a duplicate of a batch the log
// no longer has.
func TestTornTailLeavesConsistentState(t *testing.T) {
	dir := t.TempDir()
	p, err := OpenPartition(dir, quietConfig(Config{}), true)
	if err != nil {
		t.Fatal(err)
	}
	appendExpect(t, p, idemBatch(1, 0, 0, "a", "b"), 0, false)
	appendExpect(t, p, idemBatch(1, 0, 2, "c", "d"), 2, false)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// The close snapshot lies past the end the crash leaves.
	path := segmentName(dir, 0, logSuffix)
	fi, _ := os.Stat(path)
	if err := os.Truncate(path, fi.Size()-3); err != nil {
		t.Fatal(err)
	}
	p = openT(t, dir, Config{}, false)
	if p.EndOffset() != 2 {
		t.Fatalf("end %d after the cut", p.EndOffset())
	}
	if offs, _ := listSnapshots(dir); len(offs) != 0 {
		t.Fatalf("snapshots past the log end kept: %v", offs)
	}
	appendExpect(t, p, idemBatch(1, 0, 2, "c", "d"), 2, false)
	appendExpect(t, p, idemBatch(1, 0, 0, "a", "b"), 0, true)
	appendExpect(t, p, idemBatch(1, 0, 2, "c", "d"), 2, true)
}

func TestSnapshotsAreBounded(t *testing.T) {
	dir := t.TempDir()
	p := openT(t, dir, Config{SegmentBytes: 1024}, true)
	for i := range int32(100) {
		appendExpect(t, p, idemBatch(1, 0, i, "0123456789012345678901234567890123456789"), int64(i), false)
	}
	offs, err := listSnapshots(dir)
	if err != nil || len(offs) != keptSnapshots {
		t.Fatalf("snapshots %v %v", offs, err)
	}
	segs, _ := listSegments(dir)
	if offs[len(offs)-1] != segs[len(segs)-1] {
		t.Fatalf("newest snapshot at %d, active segment at %d", offs[len(offs)-1], segs[len(segs)-1])
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := newProducerStates()
	for i := range int64(12) {
		s.add(header{producerID: 100 - i, producerEpoch: int16(i), baseSequence: int32(i), baseOffset: i * 10, lastOffsetDelta: 2}, 1234)
		s.add(header{producerID: 100 - i, producerEpoch: int16(i), baseSequence: int32(i) + 3, baseOffset: i*10 + 3, lastOffsetDelta: 0}, 1235)
	}
	data := s.encode()
	got, err := decodeProducerSnapshot(data, 200)
	if err != nil {
		t.Fatal(err)
	}
	if !sameStates(s, got) {
		t.Fatal("decoded state differs")
	}
	if _, err := decodeProducerSnapshot(data, 50); err == nil {
		t.Fatal("a snapshot naming batches past its offset was accepted")
	}
	data[10] ^= 1
	if _, err := decodeProducerSnapshot(data, 200); err == nil {
		t.Fatal("damaged snapshot accepted")
	}
}

func sameStates(a, b *producerStates) bool {
	return fmt.Sprint(dumpStates(a)) == fmt.Sprint(dumpStates(b))
}

func dumpStates(s *producerStates) map[int64]string {
	m := map[int64]string{}
	for id, e := range s.m {
		m[id] = fmt.Sprintf("%d %d %d %v", e.epoch, e.lastSeen, e.txnFirst, e.batches)
	}
	return m
}

// FuzzProducerSnapshot feeds arbitrary bytes to the snapshot decoder: it
// must not panic, and what it accepts must encode back to the same bytes.
func FuzzProducerSnapshot(f *testing.F) {
	s := newProducerStates()
	s.add(header{producerID: 1, baseSequence: 0, lastOffsetDelta: 4}, 99)
	f.Add(s.encode())
	f.Add(newProducerStates().encode())
	f.Add([]byte("SLPS"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeProducerSnapshot(data, 1<<40)
		if err != nil {
			return
		}
		if data[4] == snapshotVersion && string(got.encode()) != string(data) {
			t.Fatal("accepted snapshot does not re-encode to itself")
		}
		again, err := decodeProducerSnapshot(got.encode(), 1<<40)
		if err != nil || !sameStates(got, again) {
			t.Fatalf("accepted snapshot does not survive a re-encode: %v", err)
		}
	})
}

// BenchmarkOpenAfterCrash opens, as after a crash, a partition whose
// active segment holds 100,000 idempotent batches from 100 producers: with
// the close snapshot (recovery scan only) and without any (the scan plus a
// replay of every batch header, the worst case).
func BenchmarkOpenAfterCrash(b *testing.B) {
	dir := b.TempDir()
	p, err := OpenPartition(dir, quietConfig(Config{}), true)
	if err != nil {
		b.Fatal(err)
	}
	const batches, producers = 100_000, 100
	for i := range batches {
		if _, _, err := p.Append(idemBatch(int64(i%producers), 0, int32(i/producers), "0123456789"), time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		b.Fatal(err)
	}
	open := func(b *testing.B) {
		for range b.N {
			p, err := OpenPartition(dir, quietConfig(Config{}), false)
			if err != nil {
				b.Fatal(err)
			}
			if p.Producers() != producers {
				b.Fatalf("tracks %d producers", p.Producers())
			}
			b.StopTimer()
			// Close would write a snapshot and spare the next open the
			// replay.
			p.mu.Lock()
			p.closed = true
			p.closeSegments()
			p.mu.Unlock()
			b.StartTimer()
		}
	}
	b.Run("snapshot", open)
	offs, _ := listSnapshots(dir)
	for _, o := range offs {
		os.Remove(snapshotName(dir, o))
	}
	b.Run("replay", open)
}
