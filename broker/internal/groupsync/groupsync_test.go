package groupsync

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// Concurrent callers all return with their position durable, sharing
// flushes: fewer flushes than callers, and none after the last position.
func TestSharedFlushes(t *testing.T) {
	var s Syncer
	var written, flushes atomic.Int64
	flush := func() (int64, error) {
		flushes.Add(1)
		return written.Load(), nil
	}
	const callers = 64
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pos := written.Add(1)
			if err := s.Sync(pos, flush); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := flushes.Load(); n < 1 || n > callers {
		t.Fatalf("%d flushes for %d callers", n, callers)
	}
	before := flushes.Load()
	if err := s.Sync(callers, flush); err != nil || flushes.Load() != before {
		t.Fatalf("Sync of a durable position flushed again (%v)", err)
	}
}

// A failed flush is its caller's error; the next caller flushes anew, and
// Advance counts as durable without a flush.
func TestErrorAndAdvance(t *testing.T) {
	var s Syncer
	boom := errors.New("boom")
	if err := s.Sync(1, func() (int64, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("Sync = %v; want the flush error", err)
	}
	if err := s.Sync(1, func() (int64, error) { return 1, nil }); err != nil {
		t.Fatal(err)
	}
	s.Advance(10)
	if err := s.Sync(10, func() (int64, error) { t.Fatal("flushed a position Advance covered"); return 0, nil }); err != nil {
		t.Fatal(err)
	}
}
