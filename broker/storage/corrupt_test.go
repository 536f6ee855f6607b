package storage

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuf collects a partition's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func loggedConfig(c Config, l *logBuf) Config {
	c.Logger = slog.New(slog.NewTextHandler(l, nil))
	c.Name = "t-0"
	return c
}

// fill appends n one-record batches and returns each batch's position.
func fill(t *testing.T, p *Partition, n int) []int64 {
	t.Helper()
	var pos []int64
	size := int64(0)
	for i := range n {
		b := makeBatch(int64(1000+i), fmt.Sprintf("value-%03d", i))
		pos = append(pos, size)
		size += int64(len(b))
		if _, _, err := p.Append(b, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return pos
}

// readFrom reads like a consumer from off until the log end or an error,
// checking every byte served, and returns the offsets served and the error.
func readFrom(t *testing.T, p *Partition, off int64) ([]int64, error) {
	t.Helper()
	var got []int64
	for off < p.EndOffset() {
		sec, err := p.Read(off, 1<<20)
		if err != nil {
			return got, err
		}
		buf := make([]byte, sec.Len)
		if _, err := sec.File.ReadAt(buf, sec.Pos); err != nil {
			t.Fatal(err)
		}
		sec.Release()
		for len(buf) > 0 {
			h, err := checkBatch(buf, true)
			if err != nil {
				t.Fatalf("served a corrupt batch at offset %d: %v", off, err)
			}
			got = append(got, h.baseOffset)
			off = h.nextOffset()
			buf = buf[h.size():]
		}
		if sec.Next != off {
			t.Fatalf("section says it ends at %d, its batches end at %d", sec.Next, off)
		}
	}
	return got, nil
}

func TestReadNeverServesCorruptBatch(t *testing.T) {
	cases := []struct {
		name string
		// damage changes the batch at pos.
		damage func(t *testing.T, path string, pos int64)
		// after says a read past the batch still works (its length is intact).
		after bool
	}{
		{"payload byte", func(t *testing.T, path string, pos int64) { flipByte(pos+70)(t, path, 0) }, true},
		{"crc field", func(t *testing.T, path string, pos int64) { flipByte(pos+18)(t, path, 0) }, true},
		{"length field", func(t *testing.T, path string, pos int64) { flipByte(pos+10)(t, path, 0) }, false},
		{"base offset", func(t *testing.T, path string, pos int64) { flipByte(pos+7)(t, path, 0) }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			var logs logBuf
			// One index entry per batch or so, so a read past the damage can
			// start from the index.
			p, err := OpenPartition(dir, loggedConfig(Config{IndexIntervalBytes: 64}, &logs), true)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			pos := fill(t, p, 20)
			// The damage appears under the running broker, before anything
			// was read.
			c.damage(t, segmentName(dir, 0, logSuffix), pos[12])
			for range 3 {
				got, err := readFrom(t, p, 0)
				if len(got) != 12 || got[11] != 11 {
					t.Fatalf("served offsets %v, want 0..11 (everything before the damage)", got)
				}
				var ce *CorruptError
				if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.Offset != 12 {
					t.Fatalf("read at the damage: %v, want a CorruptError at offset 12", err)
				}
			}
			if n := strings.Count(logs.String(), `msg="corrupt record batch`); n != 1 {
				t.Fatalf("logged %d times, want once:\n%s", n, logs.String())
			}
			if !strings.Contains(logs.String(), "partition=t-0 offset=12") {
				t.Fatalf("log line does not name the partition and offset:\n%s", logs.String())
			}
			if p.CorruptBatches() != 1 {
				t.Fatalf("counted %d corrupt batches, want 1", p.CorruptBatches())
			}
			// A consumer that skips the batch reads on: the index has an
			// entry for the next one (a damaged length hides the batches up
			// to the next entry).
			if got, err := readFrom(t, p, 13); err != nil || len(got) != 7 {
				t.Fatalf("read past the damage: %v %v", got, err)
			}
			// Appends go on; the new batches are served.
			if _, _, err := p.Append(makeBatch(2000, "new"), time.Now()); err != nil {
				t.Fatal(err)
			}
			if got, err := readFrom(t, p, 20); err != nil || len(got) != 1 {
				t.Fatalf("read of a new batch: %v %v", got, err)
			}
		})
	}
}

func TestReadChecksOnceAndSeesLaterDamageAfterIt(t *testing.T) {
	dir := t.TempDir()
	p := openT(t, dir, Config{}, true)
	fill(t, p, 10)
	if got, err := readFrom(t, p, 0); err != nil || len(got) != 10 {
		t.Fatalf("first read: %v %v", got, err)
	}
	p.segs[0].vmu.Lock()
	vd := p.segs[0].vd
	p.segs[0].vmu.Unlock()
	if len(vd.runs) != 1 || vd.runs[0] != (checkedRun{0, p.segs[0].size, 10}) {
		t.Fatalf("checked runs after a full read: %+v, want one, 0..%d", vd.runs, p.segs[0].size)
	}
	// Batches appended later are checked when first read, so damage to
	// them is caught even though the ones before were checked already.
	more := fill(t, p, 10)
	flipByte(vd.runs[0].to+more[3]+70)(t, segmentName(dir, 0, logSuffix), 0)
	got, err := readFrom(t, p, 0)
	if len(got) != 13 || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read: %d batches, %v; want 13 and the damage at offset 13", len(got), err)
	}
}

// TestCleanOpenChecksActiveTail damages the active segment after a clean
// stop. A torn tail (batches that no longer follow each other) is cut; a
// batch whose CRC alone fails is kept but never served, so the intact
// batches after it keep their offsets.
func TestCleanOpenChecksActiveTail(t *testing.T) {
	batch := makeBatch(1000, "0123456789", "abcdefghij")
	n := int64(len(batch))
	cases := []struct {
		name    string
		damage  func(t *testing.T, path string, size int64)
		wantEnd int64 // log end after the open
		served  int   // batches served from offset 0
		logged  string
	}{
		{"intact", func(*testing.T, string, int64) {}, 20, 10, ""},
		{"zeros after the end", appendBytes(make([]byte, 100)), 20, 10, "offset=20"},
		{"torn last batch", truncateTo(10*n - 5), 18, 9, "offset=18"},
		{"length of seventh batch", flipByte(6*n + 10), 12, 6, "offset=12"},
		{"bit flip in last batch", flipByte(10*n - 1), 20, 9, "offset=18"},
		{"bit flip in seventh batch", flipByte(6*n + 70), 20, 6, "offset=12"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p, err := OpenPartition(dir, quietConfig(Config{}), true)
			if err != nil {
				t.Fatal(err)
			}
			for range 10 {
				if _, _, err := p.Append(append([]byte(nil), batch...), time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			c.damage(t, segmentName(dir, 0, logSuffix), 10*n)
			var logs logBuf
			p2, err := OpenPartition(dir, loggedConfig(Config{}, &logs), true)
			if err != nil {
				t.Fatal(err)
			}
			defer p2.Close()
			if got := p2.EndOffset(); got != c.wantEnd {
				t.Fatalf("end offset %d, want %d", got, c.wantEnd)
			}
			if c.logged != "" && !strings.Contains(logs.String(), "partition=t-0 "+c.logged) {
				t.Fatalf("not logged with the partition and %s:\n%s", c.logged, logs.String())
			}
			got, err := readFrom(t, p2, 0)
			if len(got) != c.served || (c.served*2 < int(c.wantEnd)) != errors.Is(err, ErrCorrupt) {
				t.Fatalf("served %v, %v; want %d batches", got, err, c.served)
			}
			if c.served*2 < int(c.wantEnd) {
				// The batches after a kept corrupt one are served.
				if after, err := readFrom(t, p2, int64(c.served*2+2)); err != nil || len(after) != 10-c.served-1 {
					t.Fatalf("after the corrupt batch: %v %v", after, err)
				}
			}
			if base, _, err := p2.Append(append([]byte(nil), batch...), time.Now()); err != nil || base != c.wantEnd {
				t.Fatalf("append after the open: base %d, %v", base, err)
			}
		})
	}
}

func TestDamagedSealedSegmentTakesPartitionOffline(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string, seg1 int64, size int64)
	}{
		{"torn", func(t *testing.T, dir string, seg1, size int64) {
			truncateTo(size-10)(t, segmentName(dir, seg1, logSuffix), 0)
		}},
		{"torn without index files", func(t *testing.T, dir string, seg1, size int64) {
			os.Remove(segmentName(dir, seg1, indexSuffix))
			truncateTo(size-10)(t, segmentName(dir, seg1, logSuffix), 0)
		}},
		{"bad CRC, index rebuilt", func(t *testing.T, dir string, seg1, _ int64) {
			os.Remove(segmentName(dir, seg1, timeIndexSuffix))
			flipByte(100)(t, segmentName(dir, seg1, logSuffix), 0)
		}},
		{"header offset", func(t *testing.T, dir string, seg1, _ int64) {
			flipByte(7)(t, segmentName(dir, seg1, logSuffix), 0)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{SegmentBytes: 2048, IndexIntervalBytes: 1 << 20}
			p, err := OpenPartition(dir, quietConfig(cfg), true)
			if err != nil {
				t.Fatal(err)
			}
			fill(t, p, 100)
			if len(p.segs) < 3 {
				t.Fatalf("want several segments, got %d", len(p.segs))
			}
			seg1, size := p.segs[1].base, p.segs[1].size
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			c.damage(t, dir, seg1, size)
			before, _ := os.ReadDir(dir)
			var logs logBuf
			for _, clean := range []bool{true, false} {
				p2, err := OpenPartition(dir, loggedConfig(cfg, &logs), clean)
				if err != nil {
					t.Fatalf("open failed instead of taking the partition offline: %v", err)
				}
				off := p2.Offline()
				if !errors.Is(off, ErrOffline) || !strings.Contains(off.Error(), segmentName(dir, seg1, logSuffix)) {
					t.Fatalf("Offline() = %v, want ErrOffline naming the segment", off)
				}
				if _, err := p2.Read(0, 1<<20); !errors.Is(err, ErrOffline) {
					t.Fatalf("read of an offline partition: %v", err)
				}
				if _, _, err := p2.Append(makeBatch(1, "x"), time.Now()); !errors.Is(err, ErrOffline) {
					t.Fatalf("append to an offline partition: %v", err)
				}
				if _, _, err := p2.OffsetForTime(0); !errors.Is(err, ErrOffline) {
					t.Fatalf("offset for time of an offline partition: %v", err)
				}
				if err := p2.Sync(1); !errors.Is(err, ErrOffline) {
					t.Fatalf("sync of an offline partition: %v", err)
				}
				// Everything else answers without touching the files.
				p2.Offsets()
				p2.Size()
				p2.LastStableOffset()
				p2.AbortedTxns(0, 10)
				p2.ActiveProducers()
				p2.MaxProducerID()
				p2.ExpireProducers(time.Now())
				if n, err := p2.EnforceRetention(time.Now().Add(1000 * time.Hour)); n != 0 || err != nil {
					t.Fatalf("retention on an offline partition: %d %v", n, err)
				}
				if err := p2.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if !strings.Contains(logs.String(), "partition offline") || !strings.Contains(logs.String(), "partition=t-0") {
				t.Fatalf("no log line naming the partition:\n%s", logs.String())
			}
			// Nothing was changed or removed: the operator decides.
			after, _ := os.ReadDir(dir)
			if fmt.Sprint(names(before)) != fmt.Sprint(names(after)) {
				t.Fatalf("files changed: %v -> %v", names(before), names(after))
			}
			// What the error tells the operator works: without the damaged
			// segment and the older ones the partition opens, starting after
			// them, with every later record.
			bases, _ := listSegments(dir)
			for _, b := range bases {
				if b <= seg1 {
					os.Remove(segmentName(dir, b, logSuffix))
				}
			}
			p3 := openT(t, dir, cfg, true)
			if p3.Offline() != nil {
				t.Fatalf("still offline: %v", p3.Offline())
			}
			if start, end := p3.Offsets(); start <= seg1 || end != 100 {
				t.Fatalf("offsets %d..%d after the repair, want after %d up to 100", start, end, seg1)
			}
			if got, err := readFrom(t, p3, p3.StartOffset()); err != nil || int64(len(got)) != 100-p3.StartOffset() {
				t.Fatalf("after the repair: %d batches, %v", len(got), err)
			}
		})
	}
}

func names(ents []os.DirEntry) []string {
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestCheckedRunsAfterReopen: a clean open checks the tail; a consumer
// reading from the start then joins its run to it, so a second reader
// checks nothing.
func TestCheckedRunsAfterReopen(t *testing.T) {
	dir := t.TempDir()
	p, err := OpenPartition(dir, quietConfig(Config{}), true)
	if err != nil {
		t.Fatal(err)
	}
	for range 60 {
		if _, _, err := p.Append(bigBatch(200), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p2 := openT(t, dir, Config{}, true)
	seg := p2.segs[0]
	if len(seg.vd.runs) != 1 || seg.vd.runs[0].from == 0 || seg.vd.runs[0].to != seg.size {
		t.Fatalf("after a clean open: runs %+v, want the last %d bytes of %d", seg.vd.runs, activeTailCheckBytes, seg.size)
	}
	if got, err := readFrom(t, p2, 0); err != nil || len(got) != 60 {
		t.Fatalf("read: %d batches, %v", len(got), err)
	}
	seg.vmu.Lock()
	runs := slices.Clone(seg.vd.runs)
	seg.vmu.Unlock()
	if len(runs) != 1 || runs[0] != (checkedRun{0, seg.size, 60 * 200}) {
		t.Fatalf("after reading everything: runs %+v, want one, 0..%d", runs, seg.size)
	}
}

func TestMarkVerifiedMergesAndBounds(t *testing.T) {
	var s segment
	for i := range int64(maxCheckedRuns + 3) {
		s.markVerified(i*100, i*100+50, i*10+5)
	}
	if len(s.vd.runs) != maxCheckedRuns || s.vd.runs[0].from != 300 {
		t.Fatalf("runs %+v: want the %d highest", s.vd.runs, maxCheckedRuns)
	}
	// A read joining two runs merges them, keeping the later end's offset.
	s.markVerified(350, 400, 40)
	if len(s.vd.runs) != maxCheckedRuns-1 || s.vd.runs[0] != (checkedRun{300, 450, 45}) {
		t.Fatalf("after a joining read: %+v", s.vd.runs)
	}
	// A run below all others while full is kept; the next lowest goes.
	for i := int64(20); len(s.vd.runs) < maxCheckedRuns; i++ {
		s.markVerified(i*100, i*100+50, i*10+5)
	}
	s.markVerified(0, 10, 1)
	if len(s.vd.runs) != maxCheckedRuns || s.vd.runs[0] != (checkedRun{0, 10, 1}) || s.vd.runs[1].from == 300 {
		t.Fatalf("after a low run while full: %+v", s.vd.runs)
	}
}
