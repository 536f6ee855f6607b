package storage

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func quietConfig(c Config) Config {
	c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return c
}

func openT(t *testing.T, dir string, cfg Config, clean bool) *Partition {
	t.Helper()
	p, err := OpenPartition(dir, quietConfig(cfg), clean)
	if err != nil {
		t.Fatalf("open partition: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// readAll returns the base offsets and sizes of every batch served from
// offset 0, reading the way a consumer does.
func readAll(t *testing.T, p *Partition) (offsets []int64) {
	t.Helper()
	off := p.StartOffset()
	for off < p.EndOffset() {
		sec, err := p.Read(off, 1<<20)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		buf := make([]byte, sec.Len)
		if _, err := sec.File.ReadAt(buf, sec.Pos); err != nil {
			t.Fatal(err)
		}
		sec.Release()
		for len(buf) > 0 {
			h, err := checkBatch(buf, true)
			if err != nil {
				t.Fatalf("served a bad batch at offset %d: %v", off, err)
			}
			offsets = append(offsets, h.baseOffset)
			off = h.nextOffset()
			buf = buf[h.size():]
		}
	}
	return offsets
}

func TestAppendAssignsOffsetsAndRejectsCorrupt(t *testing.T) {
	p := openT(t, t.TempDir(), Config{}, true)
	now := time.Now()
	b1 := makeBatch(1000, "a", "b", "c")
	if base, next, err := p.Append(b1, now); err != nil || base != 0 || next != 3 {
		t.Fatalf("append: %d %d %v", base, next, err)
	}
	two := append(makeBatch(2000, "d"), makeBatch(2001, "e", "f")...)
	if base, next, err := p.Append(two, now); err != nil || base != 3 || next != 6 {
		t.Fatalf("append two batches: %d %d %v", base, next, err)
	}
	bad := makeBatch(3000, "g")
	bad[len(bad)-1] ^= 0xff
	cases := []struct {
		name string
		b    []byte
	}{
		{"crc", bad},
		{"good then bad", append(makeBatch(3000, "h"), bad...)},
		{"truncated", makeBatch(3000, "i")[:40]},
		{"magic 1", func() []byte { b := makeBatch(3000, "j"); b[16] = 1; return b }()},
		{"empty", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := p.Append(c.b, now); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			if p.EndOffset() != 6 {
				t.Fatalf("end offset moved to %d", p.EndOffset())
			}
		})
	}
	if got := fmt.Sprint(readAll(t, p)); got != "[0 3 4]" {
		t.Fatalf("batches at %s", got)
	}
	if off, ts, err := p.OffsetForTime(2001); err != nil || off != 4 || ts != 2001 {
		t.Fatalf("offset for time 2001: %d %d %v", off, ts, err)
	}
	if off, ts, err := p.OffsetForTime(1001); err != nil || off != 1 || ts != 1001 {
		t.Fatalf("offset for time 1001: %d %d %v", off, ts, err)
	}
	if off, _, err := p.OffsetForTime(9999); err != nil || off != -1 {
		t.Fatalf("offset for a future time: %d %v", off, err)
	}
}

func TestRecoveryCutsTornTail(t *testing.T) {
	batch := makeBatch(1000, "0123456789", "abcdefghij")
	n := len(batch)
	cases := []struct {
		name     string
		damage   func(t *testing.T, path string, size int64)
		wantEnd  int64
		wantSize int64
	}{
		{"intact", func(*testing.T, string, int64) {}, 10, 5 * int64(n)},
		{"cut in header", truncateTo(4*int64(n) + 20), 8, 4 * int64(n)},
		{"cut in body", truncateTo(5*int64(n) - 3), 8, 4 * int64(n)},
		{"cut at boundary", truncateTo(3 * int64(n)), 6, 3 * int64(n)},
		{"zeros after end", appendBytes(make([]byte, 100)), 10, 5 * int64(n)},
		{"bit flip in last batch", flipByte(5*int64(n) - 1), 8, 4 * int64(n)},
		{"bit flip in third batch", flipByte(2*int64(n) + 70), 4, 2 * int64(n)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p, err := OpenPartition(dir, quietConfig(Config{}), true)
			if err != nil {
				t.Fatal(err)
			}
			for range 5 {
				b := append([]byte(nil), batch...)
				if _, _, err := p.Append(b, time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			p.Close()
			path := segmentName(dir, 0, logSuffix)
			c.damage(t, path, 5*int64(n))
			p2 := openT(t, dir, Config{}, false)
			if got := p2.EndOffset(); got != c.wantEnd {
				t.Fatalf("end offset %d, want %d", got, c.wantEnd)
			}
			if fi, _ := os.Stat(path); fi.Size() != c.wantSize {
				t.Fatalf("segment is %d bytes, want %d", fi.Size(), c.wantSize)
			}
			if got := len(readAll(t, p2)); int64(got) != c.wantEnd/2 {
				t.Fatalf("served %d batches, want %d", got, c.wantEnd/2)
			}
			// The log takes appends at the cut.
			if base, _, err := p2.Append(append([]byte(nil), batch...), time.Now()); err != nil || base != c.wantEnd {
				t.Fatalf("append after recovery: base %d, %v", base, err)
			}
		})
	}
}

func truncateTo(size int64) func(*testing.T, string, int64) {
	return func(t *testing.T, path string, _ int64) {
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
	}
}

func appendBytes(b []byte) func(*testing.T, string, int64) {
	return func(t *testing.T, path string, _ int64) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
	}
}

func flipByte(at int64) func(*testing.T, string, int64) {
	return func(t *testing.T, path string, _ int64) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var b [1]byte
		f.ReadAt(b[:], at)
		b[0] ^= 0x40
		if _, err := f.WriteAt(b[:], at); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRollIndexAndReopen(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{SegmentBytes: 4096, IndexIntervalBytes: 256}
	p, err := OpenPartition(dir, quietConfig(cfg), true)
	if err != nil {
		t.Fatal(err)
	}
	const batches = 200
	for i := range batches {
		if _, _, err := p.Append(makeBatch(int64(1000+10*i), fmt.Sprintf("value-%03d", i)), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.segs) < 3 {
		t.Fatalf("expected several segments, got %d", len(p.segs))
	}
	want := fmt.Sprint(readAll(t, p))
	p.Close()
	for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
		if _, err := os.Stat(segmentName(dir, 0, suffix)); err != nil {
			t.Fatalf("sealed segment has no %s file: %v", suffix, err)
		}
	}
	// A damaged index is rebuilt from the log rather than trusted.
	os.WriteFile(segmentName(dir, 0, indexSuffix), []byte{1, 2, 3}, 0o644)
	p2 := openT(t, dir, cfg, true)
	if got := fmt.Sprint(readAll(t, p2)); got != want {
		t.Fatalf("after reopen served %s, want %s", got, want)
	}
	// Every offset is found, including ones inside a segment.
	for off := int64(0); off < batches; off += 37 {
		sec, err := p2.Read(off, 1)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := (&segment{f: sec.File}).readHeader(sec.Pos)
		sec.Release()
		if h.baseOffset != off {
			t.Fatalf("read at %d returned batch at %d", off, h.baseOffset)
		}
	}
	if off, _, _ := p2.OffsetForTime(1000 + 10*150); off != 150 {
		t.Fatalf("offset for time: %d, want 150", off)
	}
}

func TestRetention(t *testing.T) {
	cases := []struct {
		name     string
		cfg      Config
		wantGone bool
	}{
		{"by time", Config{RetentionAge: time.Hour}, true},
		{"by bytes", Config{RetentionAge: -1, RetentionBytes: 2000}, true},
		{"kept", Config{RetentionAge: -1}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.cfg.SegmentBytes = 1024
			p := openT(t, dir, c.cfg, true)
			old := time.Now().Add(-2 * time.Hour).UnixMilli()
			for i := range 60 {
				if _, _, err := p.Append(makeBatch(old, fmt.Sprintf("v%03d-padding-padding-padding", i)), time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			before := len(p.segs)
			n, err := p.EnforceRetention(time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if c.wantGone != (n > 0) {
				t.Fatalf("deleted %d of %d segments", n, before)
			}
			if c.wantGone {
				start := p.StartOffset()
				if start == 0 {
					t.Fatal("log start offset did not move")
				}
				if _, err := p.Read(0, 100); !errors.Is(err, ErrOffsetOutOfRange) {
					t.Fatalf("read below log start: %v", err)
				}
				if _, err := os.Stat(filepath.Join(dir, "00000000000000000000.log")); !os.IsNotExist(err) {
					t.Fatalf("first segment file still there: %v", err)
				}
				if p.EndOffset() != 60 || len(p.segs) < 1 {
					t.Fatalf("end offset %d", p.EndOffset())
				}
			}
		})
	}
}

func TestGroupCommit(t *testing.T) {
	p := openT(t, t.TempDir(), Config{}, true)
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			_, next, err := p.Append(makeBatch(1, fmt.Sprint(i)), time.Now())
			if err == nil {
				err = p.Sync(next)
			}
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if flushed := p.synced.Durable(); flushed != 16 {
		t.Fatalf("flushed up to %d, want 16", p.synced.Durable())
	}
}

func TestRollByAge(t *testing.T) {
	p := openT(t, t.TempDir(), Config{SegmentAge: time.Hour}, true)
	t0 := time.Now()
	steps := []struct {
		at       time.Time
		wantSegs int
	}{
		{t0, 1},
		{t0.Add(30 * time.Minute), 1},
		{t0.Add(61 * time.Minute), 2}, // the first segment is an hour old
		{t0.Add(62 * time.Minute), 2},
		{t0.Add(122 * time.Minute), 3},
	}
	for i, s := range steps {
		if _, _, err := p.Append(makeBatch(s.at.UnixMilli(), fmt.Sprint(i)), s.at); err != nil {
			t.Fatal(err)
		}
		if len(p.segs) != s.wantSegs {
			t.Fatalf("after append %d: %d segments, want %d", i, len(p.segs), s.wantSegs)
		}
	}
	if got := fmt.Sprint(readAll(t, p)); got != "[0 1 2 3 4]" {
		t.Fatalf("served %s", got)
	}
}

func TestCleanCloseIndexesActiveSegment(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{IndexIntervalBytes: 256}
	p, err := OpenPartition(dir, quietConfig(cfg), true)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, _, err := p.Append(makeBatch(int64(1000+i), fmt.Sprint(i)), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	want := fmt.Sprint(readAll(t, p))
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(segmentName(dir, 0, indexSuffix)); err != nil {
		t.Fatalf("clean close wrote no index for the active segment: %v", err)
	}
	cases := []struct {
		name  string
		clean bool
		cut   int64 // truncate the log to this size first, if > 0
	}{
		{"clean reopen", true, 0},
		{"unclean reopen ignores the index", false, 0},
		{"index past a shortened file is not trusted", true, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.cut > 0 {
				os.Truncate(segmentName(dir, 0, logSuffix), c.cut)
			}
			p := openT(t, dir, cfg, c.clean)
			got := fmt.Sprint(readAll(t, p))
			if c.cut == 0 && got != want {
				t.Fatalf("served %s, want %s", got, want)
			}
			if c.cut > 0 && p.EndOffset() >= 50 {
				t.Fatalf("end offset %d after the file was cut", p.EndOffset())
			}
			if off, _, _ := p.OffsetForTime(1000 + 40); c.cut == 0 && off != 40 {
				t.Fatalf("offset for time: %d", off)
			}
			p.Close()
		})
	}
}
