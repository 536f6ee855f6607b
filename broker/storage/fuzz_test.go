package storage

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzRecovery opens a partition whose active segment holds arbitrary
// bytes. Recovery must not panic, and what it keeps must read back as valid
// batches with contiguous offsets.
func FuzzRecovery(f *testing.F) {
	one := makeBatch(1000, "a", "b")
	two := append(append([]byte(nil), one...), one...)
	patchBatch(two[len(one):], 2)
	f.Add(one)
	f.Add(two)
	f.Add(two[:len(two)-5])
	f.Add(append(append([]byte(nil), one...), make([]byte, 70)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(segmentName(dir, 0, logSuffix), data, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := OpenPartition(dir, quietConfig(Config{}), false)
		if err != nil {
			return // refusing to open is fine; panicking or serving garbage is not
		}
		defer p.Close()
		offsets := readAll(t, p)
		if len(offsets) > 0 && offsets[0] != 0 {
			t.Fatalf("first batch at offset %d", offsets[0])
		}
	})
}

// FuzzDamagedLog writes a log of several segments, closes it cleanly,
// overwrites bytes at fuzzed places (in sealed segments, the active one and
// index files alike) and opens it again, clean and unclean, and reads it
// from every batch start it can find. Nothing may panic, the open may only
// fail for I/O, and no read may serve a batch that fails its checks.
func FuzzDamagedLog(f *testing.F) {
	f.Add(uint16(10), byte(0x01), uint16(0), byte(0), true)
	f.Add(uint16(700), byte(0x80), uint16(1500), byte(0xff), false)
	f.Add(uint16(2100), byte(0x10), uint16(9), byte(0x40), true)
	f.Fuzz(func(t *testing.T, at1 uint16, x1 byte, at2 uint16, x2 byte, clean bool) {
		dir := t.TempDir()
		cfg := quietConfig(Config{SegmentBytes: 1024, IndexIntervalBytes: 128})
		p, err := OpenPartition(dir, cfg, true)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 40 {
			if _, _, err := p.Append(makeBatch(int64(1000+i), "0123456789", "abcdefghij"), time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		// The fuzzed positions index the log's files laid end to end.
		ents, _ := os.ReadDir(dir)
		var files []string
		var total int64
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && fi.Size() > 0 {
				files = append(files, filepath.Join(dir, e.Name()))
				total += fi.Size()
			}
		}
		for _, d := range []struct {
			at int64
			x  byte
		}{{int64(at1), x1}, {int64(at2), x2}} {
			at := d.at % total
			for _, name := range files {
				fi, _ := os.Stat(name)
				if at < fi.Size() {
					b, _ := os.ReadFile(name)
					b[at] ^= d.x
					os.WriteFile(name, b, 0o644)
					break
				}
				at -= fi.Size()
			}
		}
		p2, err := OpenPartition(dir, cfg, clean)
		if err != nil {
			t.Fatalf("open failed instead of cutting or going offline: %v", err)
		}
		defer p2.Close()
		if p2.Offline() != nil {
			return
		}
		start, end := p2.Offsets()
		for off := start; off < end; off++ {
			sec, err := p2.Read(off, 1<<20)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("read at %d: %v", off, err)
				}
				continue
			}
			buf := make([]byte, sec.Len)
			if _, err := sec.File.ReadAt(buf, sec.Pos); err != nil {
				t.Fatal(err)
			}
			sec.Release()
			for len(buf) > 0 {
				h, err := checkBatch(buf, true)
				if err != nil {
					t.Fatalf("read at %d served a bad batch: %v", off, err)
				}
				buf = buf[h.size():]
			}
		}
	})
}
