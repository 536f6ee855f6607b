package storage

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Appends, syncs, reads and retention at the same time: every read returns
// whole valid batches or ErrOffsetOutOfRange (its offset was just deleted).
func TestConcurrentAppendReadRetention(t *testing.T) {
	p := openT(t, t.TempDir(), Config{SegmentBytes: 2048, RetentionBytes: 8192, RetentionAge: -1}, true)
	const writers, perWriter = 4, 300
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 16)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				_, next, err := p.Append(makeBatch(int64(i), fmt.Sprintf("w%d-%d", w, i)), time.Now())
				if err == nil && i%10 == 0 {
					err = p.Sync(next)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				start, end := p.Offsets()
				for off := start; off < end; {
					sec, err := p.Read(off, 1024)
					if errors.Is(err, ErrOffsetOutOfRange) {
						break
					}
					if err != nil {
						errs <- err
						return
					}
					if sec.Len == 0 {
						break
					}
					buf := make([]byte, sec.Len)
					_, rerr := sec.File.ReadAt(buf, sec.Pos)
					sec.Release()
					if rerr != nil {
						errs <- rerr
						return
					}
					for len(buf) > 0 {
						h, err := checkBatch(buf, true)
						if err != nil {
							errs <- fmt.Errorf("read at %d served a bad batch: %w", off, err)
							return
						}
						off = h.nextOffset()
						buf = buf[h.size():]
					}
				}
			}
		})
	}
	readers.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := p.EnforceRetention(time.Now()); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(done)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if end := p.EndOffset(); end != writers*perWriter {
		t.Fatalf("end offset %d, want %d", end, writers*perWriter)
	}
	// The retention loop may have made its last pass before the last
	// appends; one more pass, now that nothing writes, must bring the log
	// within the limit.
	if _, err := p.EnforceRetention(time.Now()); err != nil {
		t.Fatal(err)
	}
	if p.Size() > 8192+2048+1024 {
		t.Fatalf("retention kept %d bytes", p.Size())
	}
}
