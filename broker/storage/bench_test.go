package storage

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// bigBatch is one batch of n 100-byte records, about what a producer sends
// per partition per request.
func bigBatch(n int) []byte {
	vals := make([]string, n)
	v := make([]byte, 100)
	rand.Read(v)
	for i := range vals {
		vals[i] = string(v)
	}
	return makeBatch(time.Now().UnixMilli(), vals...)
}

// BenchmarkAppend is acks=1 storage cost: validate (CRC-32C), patch, write.
func BenchmarkAppend(b *testing.B) {
	p, err := OpenPartition(b.TempDir(), quietConfig(Config{}), true)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	batch := bigBatch(2000)
	b.SetBytes(int64(len(batch)))
	b.ResetTimer()
	for range b.N {
		if _, _, err := p.Append(batch, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*2000)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAppendSync is acks=all storage cost: four producers append and
// wait for fsync, sharing fsyncs. Compare its MB/s with BenchmarkDiskFsync.
func BenchmarkAppendSync(b *testing.B) {
	p, err := OpenPartition(b.TempDir(), quietConfig(Config{}), true)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	const producers = 4
	batch := bigBatch(2000)
	b.SetBytes(int64(len(batch)))
	b.ResetTimer()
	var wg sync.WaitGroup
	per := (b.N + producers - 1) / producers
	for range producers {
		own := append([]byte(nil), batch...)
		wg.Go(func() {
			for range per {
				_, next, err := p.Append(own, time.Now())
				if err == nil {
					err = p.Sync(next)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(per*producers*2000)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkDiskFsync is the disk's own rate for sequential 1 MiB writes
// each followed by fsync.
func BenchmarkDiskFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	rand.Read(chunk)
	b.SetBytes(int64(len(chunk)))
	for range b.N {
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

// benchLog fills a partition with about 64 MiB of 2000-record batches and
// closes it cleanly.
func benchLog(b *testing.B) (dir string, size int64) {
	dir = b.TempDir()
	p, err := OpenPartition(dir, quietConfig(Config{}), true)
	if err != nil {
		b.Fatal(err)
	}
	batch := bigBatch(2000)
	for size < 64<<20 {
		if _, _, err := p.Append(batch, time.Now()); err != nil {
			b.Fatal(err)
		}
		size += int64(len(batch))
	}
	if err := p.Close(); err != nil {
		b.Fatal(err)
	}
	return dir, size
}

// readLog reads p from its start in 1 MiB fetches, copying each section out
// as sendfile would.
func readLog(b *testing.B, p *Partition, buf []byte) {
	for off := int64(0); off < p.EndOffset(); {
		sec, err := p.Read(off, int64(len(buf)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := sec.File.ReadAt(buf[:sec.Len], sec.Pos); err != nil {
			b.Fatal(err)
		}
		off = sec.Next
		sec.Release()
	}
}

// BenchmarkReadFirst is a consumer reading a log just opened (after a clean
// stop) from its start: every batch is read for the first time, so each is
// checked (CRC-32C) before it is served. MB/s of log served.
func BenchmarkReadFirst(b *testing.B) {
	dir, size := benchLog(b)
	buf := make([]byte, 1<<20)
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		p, err := OpenPartition(dir, quietConfig(Config{}), true)
		if err != nil {
			b.Fatal(err)
		}
		readLog(b, p, buf)
		b.StopTimer()
		p.Close()
		b.StartTimer()
	}
}

// BenchmarkReread reads the same log again and again: batches already
// checked are served without a check.
func BenchmarkReread(b *testing.B) {
	dir, size := benchLog(b)
	p, err := OpenPartition(dir, quietConfig(Config{}), true)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	buf := make([]byte, 1<<20)
	readLog(b, p, buf)
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		readLog(b, p, buf)
	}
}
