package storage

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// The lock assertions (lockcheck.go) run in every test of the package.
func init() { checkLocks = true }

// checkSection reads sec, which a read at off returned, and checks it holds
// whole valid batches, none starting at or past upto (-1: no bound). It
// returns the offset after the last batch.
func checkSection(sec Section, off, upto int64) (int64, error) {
	buf := make([]byte, sec.Len)
	if _, err := sec.File.ReadAt(buf, sec.Pos); err != nil {
		return off, err
	}
	for len(buf) > 0 {
		h, err := checkBatch(buf, true)
		if err != nil {
			return off, fmt.Errorf("read at %d served a bad batch: %w", off, err)
		}
		if upto >= 0 && h.baseOffset >= upto {
			return off, fmt.Errorf("read at %d below %d served the batch at %d", off, upto, h.baseOffset)
		}
		off = h.nextOffset()
		buf = buf[h.size():]
	}
	return off, nil
}

// readPass reads the log from its start up to upto (-1: the end), the way
// a consumer does, checking every batch served. A read whose offset
// retention just deleted ends the pass early.
func readPass(p *Partition, upto int64) error {
	start, end := p.Offsets()
	if upto >= 0 {
		end = min(end, upto)
	}
	for off := start; off < end; {
		sec, err := p.ReadUpTo(off, 1024, upto)
		if errors.Is(err, ErrOffsetOutOfRange) {
			return nil
		}
		if err != nil || sec.Len == 0 {
			return err
		}
		off, err = checkSection(sec, off, upto)
		sec.Release()
		if err != nil {
			return err
		}
	}
	return nil
}

// isClosed says whether Close has run; the goroutines below stop then.
func isClosed(p *Partition) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.closed
}

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
				if err := readPass(p, -1); err != nil {
					errs <- err
					return
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

// Every kind of call at once on one partition, then Close while they all
// still run. Under -race this checks the locking rules written on
// Partition and segment: plain, idempotent and transactional appends with
// syncs; reads to the end and up to the last stable offset; long-polls on
// the end and on the last stable offset; retention while the settings
// change; the producer and transaction queries. Each goroutine stops at
// ErrClosed (or, where a call has none, once Close has run); a waiter
// registered before Close is woken by it; a section taken before Close
// stays readable after it; and the log reopens as it was closed.
func TestConcurrentUseThenClose(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{SegmentBytes: 2048, RetentionBytes: 16 << 10, RetentionAge: -1}
	p := openT(t, dir, cfg, true)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	stop := func(err error) bool {
		if err != nil && !errors.Is(err, ErrClosed) {
			fail(err)
		}
		return err != nil
	}

	warm := make(chan struct{}) // the plain appender has written enough
	wg.Go(func() {
		for i := 0; ; i++ {
			if i == 1500 {
				close(warm)
			}
			_, next, err := p.Append(makeBatch(int64(i), fmt.Sprint(i)), time.Now())
			if err == nil && i%10 == 0 {
				err = p.Sync(next)
			}
			if stop(err) {
				if i < 1500 {
					close(warm)
				}
				return
			}
		}
	})
	wg.Go(func() { // an idempotent producer that retries every batch once
		for seq := int32(0); ; seq++ {
			b := idemBatch(9, 0, seq, "i")
			r, err := p.AppendBatches(b, time.Now())
			if stop(err) {
				return
			}
			again, err := p.AppendBatches(b, time.Now())
			if stop(err) {
				return
			}
			if !again.Duplicate || again.Base != r.Base {
				fail(fmt.Errorf("retry of the batch at %d: %+v, want a duplicate", r.Base, again))
				return
			}
		}
	})
	wg.Go(func() { // a transactional producer, committing and aborting in turn
		for seq := int32(0); ; seq++ {
			_, err := p.AppendBatches(txnBatch(7, 0, seq, "t"), time.Now())
			if stop(err) {
				return
			}
			next, err := p.AppendMarker(Marker{ProducerID: 7, Commit: seq%2 == 0}, time.Now())
			if err == nil {
				err = p.Sync(next)
			}
			if stop(err) {
				return
			}
		}
	})
	wg.Go(func() { // a read_uncommitted and a read_committed consumer
		for {
			lso := p.LastStableOffset()
			if stop(readPass(p, -1)) || stop(readPass(p, lso)) {
				return
			}
			p.AbortedTxns(p.StartOffset(), lso)
			if _, _, err := p.OffsetForTime(100); stop(err) {
				return
			}
		}
	})
	// longPoll waits with wait at the position pos reports and, woken,
	// checks the position moved (unless Close woke it), until Close.
	longPoll := func(name string, pos func() int64, wait func(int64, chan struct{}) bool) {
		ch := make(chan struct{}, 1)
		for !isClosed(p) {
			off := pos()
			if !wait(off, ch) {
				continue
			}
			<-ch
			p.Unwait(ch)
			if now := pos(); now <= off && !isClosed(p) {
				fail(fmt.Errorf("%s(%d) woke with the position at %d", name, off, now))
				return
			}
		}
	}
	wg.Go(func() { longPoll("Wait", p.EndOffset, p.Wait) })
	wg.Go(func() { longPoll("WaitStable", p.LastStableOffset, p.WaitStable) })
	wg.Go(func() { // the broker's retention loop
		for !isClosed(p) {
			if _, err := p.EnforceRetention(time.Now()); err != nil {
				fail(err)
				return
			}
			p.ExpireProducers(time.Now())
		}
	})
	wg.Go(func() { // topic config changes and the admin queries
		for i := 0; !isClosed(p); i++ {
			c := cfg
			c.RetentionBytes <<= i % 2
			p.SetConfig(quietConfig(c))
			p.Size()
			p.OpenTxns()
			p.ActiveProducers()
			p.Producers()
			p.MaxProducerID()
		}
	})

	<-warm
	var sec Section
	var from int64
	for sec.Len == 0 {
		var err error
		from = p.StartOffset()
		if sec, err = p.Read(from, 4096); err != nil && !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, err := checkSection(sec, from, -1); err != nil {
		t.Errorf("section taken before Close: %v", err)
	}
	sec.Release()

	start, end := p.Offsets()
	lso, aborted := p.LastStableOffset(), p.AbortedTxns(start, end)
	q := openT(t, dir, cfg, true)
	readAll(t, q)
	if s, e := q.Offsets(); s != start || e != end {
		t.Errorf("reopened with offsets %d-%d, closed with %d-%d", s, e, start, end)
	}
	if got := q.LastStableOffset(); got != lso {
		t.Errorf("reopened with last stable offset %d, closed with %d", got, lso)
	}
	if got := q.AbortedTxns(start, end); !slices.Equal(got, aborted) {
		t.Errorf("reopened with aborted transactions %v, closed with %v", got, aborted)
	}
}

// The assertions catch a caller that does not hold mu, or holds it only
// for reading where writing is needed.
func TestLockAssertions(t *testing.T) {
	p := openT(t, t.TempDir(), Config{}, true)
	mustPanic := func(what string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", what)
			}
		}()
		f()
	}
	mustPanic("notify without mu", func() { p.notify(false) })
	mustPanic("lso without mu", func() { p.lso() })
	p.mu.RLock()
	mustPanic("notify under the read lock", func() { p.notify(false) })
	p.lso()
	p.mu.RUnlock()
	p.mu.Lock()
	p.notify(false)
	p.lso()
	p.mu.Unlock()
}
