package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func segmentFiles(t *testing.T, dir string) int {
	t.Helper()
	bases, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(bases)
}

// DeleteRecordsBefore moves the start inside a segment, deletes the
// segments wholly below it, refuses reads below it and offsets past the
// end, and the start survives clean and unclean reopens.
func TestDeleteRecordsBefore(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{SegmentBytes: 1024, RetentionAge: -1}
	p := openT(t, dir, cfg, true)
	for i := range 40 {
		// Three records a batch, so a start can fall inside a batch.
		if _, _, err := p.Append(makeBatch(1000, fmt.Sprintf("a%02d-padding-padding", i), "b", "c"), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if p.EndOffset() != 120 {
		t.Fatalf("end %d", p.EndOffset())
	}
	segsBefore := segmentFiles(t, dir)
	if _, err := p.DeleteRecordsBefore(121, time.Now()); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("offset past the end: %v", err)
	}
	if _, err := p.DeleteRecordsBefore(-2, time.Now()); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("offset -2: %v", err)
	}
	const cut = 61 // inside the batch 60..62
	low, err := p.DeleteRecordsBefore(cut, time.Now())
	if err != nil || low != cut {
		t.Fatalf("delete before %d: low watermark %d, %v", cut, low, err)
	}
	if p.StartOffset() != cut {
		t.Fatalf("start %d, want %d", p.StartOffset(), cut)
	}
	if n := segmentFiles(t, dir); n >= segsBefore {
		t.Fatalf("%d segments before, %d after: none deleted", segsBefore, n)
	}
	if p.segs[0].base > cut || p.segs[0].next <= cut {
		t.Fatalf("first segment %d..%d does not hold the new start %d", p.segs[0].base, p.segs[0].next, cut)
	}
	if _, err := p.Read(cut-1, 100); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below the start: %v", err)
	}
	if got := readAll(t, p); got[0] != 60 {
		t.Fatalf("first batch served from the start is %d, want the one holding %d", got[0], cut)
	}
	if low, err := p.DeleteRecordsBefore(10, time.Now()); err != nil || low != cut {
		t.Fatalf("an older offset moved the start: %d, %v", low, err)
	}
	if off, _, err := p.OffsetForTime(0); err != nil || off != cut {
		t.Fatalf("offset for time 0: %d, %v; want the start %d", off, err, cut)
	}

	// Unclean reopen: the checkpoint, not the segments, gives the start.
	p2 := openT(t, dir, cfg, false)
	if p2.StartOffset() != cut {
		t.Fatalf("after reopen start %d, want %d", p2.StartOffset(), cut)
	}
	if _, err := p2.Read(cut-1, 100); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below the start after reopen: %v", err)
	}
	p2.Close()

	// -1 is the high watermark: the active segment is rolled and every
	// old segment goes.
	p3 := openT(t, dir, cfg, true)
	low, err = p3.DeleteRecordsBefore(-1, time.Now())
	if err != nil || low != 120 {
		t.Fatalf("delete all: %d, %v", low, err)
	}
	if n := segmentFiles(t, dir); n != 1 || p3.segs[0].base != 120 || p3.segs[0].size != 0 {
		t.Fatalf("after deleting everything: %d segments, first at %d holding %d bytes", n, p3.segs[0].base, p3.segs[0].size)
	}
	if _, _, err := p3.Append(makeBatch(1000, "after"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, p3); len(got) != 1 || got[0] != 120 {
		t.Fatalf("after deleting everything and appending: %v", got)
	}
	p3.Close()
	p4 := openT(t, dir, cfg, true)
	if s, e := p4.Offsets(); s != 120 || e != 121 {
		t.Fatalf("after reopen offsets %d..%d, want 120..121", s, e)
	}
}

// A crash after the checkpoint but before the segments were deleted leaves
// them; the start still holds and retention deletes them.
func TestLogStartCheckpointWithoutDeletion(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{SegmentBytes: 1024, RetentionAge: -1}
	p := openT(t, dir, cfg, true)
	for i := range 40 {
		if _, _, err := p.Append(makeBatch(1000, fmt.Sprintf("v%02d-padding-padding-padding", i)), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	if err := os.WriteFile(filepath.Join(dir, logStartFile), []byte("30\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := segmentFiles(t, dir)
	p2 := openT(t, dir, cfg, true)
	if p2.StartOffset() != 30 {
		t.Fatalf("start %d, want 30", p2.StartOffset())
	}
	n, err := p2.EnforceRetention(time.Now())
	if err != nil || n == 0 || segmentFiles(t, dir) != before-n {
		t.Fatalf("retention deleted %d segments (%v)", n, err)
	}
	if p2.segs[0].base > 30 {
		t.Fatalf("retention deleted the segment holding the start: first base %d", p2.segs[0].base)
	}
	p2.Close()
	if err := os.WriteFile(filepath.Join(dir, logStartFile), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPartition(dir, quietConfig(cfg), true); err == nil {
		t.Fatal("a garbled checkpoint opened")
	}
}

// Appends, reads, retention and DeleteRecordsBefore at the same time (run
// with -race): reads return whole valid batches or ErrOffsetOutOfRange,
// the start never moves back, and the last delete at the end leaves the
// log empty of old segments.
func TestConcurrentDeleteRecords(t *testing.T) {
	p := openT(t, t.TempDir(), Config{SegmentBytes: 2048, RetentionAge: -1}, true)
	const batches = 600
	var wg, others sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 8)
	wg.Go(func() {
		for i := range batches {
			if _, _, err := p.Append(makeBatch(int64(i), fmt.Sprintf("v%d", i)), time.Now()); err != nil {
				errs <- err
				return
			}
		}
	})
	others.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if err := readPass(p, -1); err != nil {
				errs <- err
				return
			}
		}
	})
	others.Go(func() {
		last := int64(0)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			_, end := p.Offsets()
			low, err := p.DeleteRecordsBefore(end/2, time.Now())
			if err == nil && low < last {
				err = fmt.Errorf("log start moved back from %d to %d", last, low)
			}
			if err == nil && i%5 == 0 {
				_, err = p.EnforceRetention(time.Now())
			}
			if err != nil {
				errs <- err
				return
			}
			last = low
		}
	})
	wg.Wait()
	close(done)
	others.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if low, err := p.DeleteRecordsBefore(-1, time.Now()); err != nil || low != batches {
		t.Fatalf("delete to the end: %d, %v", low, err)
	}
	if len(p.segs) != 1 || p.segs[0].size != 0 {
		t.Fatalf("%d segments left, first %d bytes", len(p.segs), p.segs[0].size)
	}
}
