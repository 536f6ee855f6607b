package storage

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// CleanerOptions configure the background cleaner. Zero values take the
// defaults named.
type CleanerOptions struct {
	// BufferBytes is the memory of the offset maps, split among the
	// threads (default DefaultCleanerBufferBytes; Kafka's
	// log.cleaner.dedupe.buffer.size).
	BufferBytes int64
	// IOBytesPerSecond bounds the cleaner's reads plus writes (0: no
	// bound; Kafka's log.cleaner.io.max.bytes.per.second).
	IOBytesPerSecond float64
	// Threads is how many logs are cleaned at once (default 1).
	Threads int
	// Backoff is the pause when no log needs cleaning (default
	// DefaultCleanerBackoff).
	Backoff time.Duration
	Logger  *slog.Logger
}

// DefaultCleanerBackoff is Kafka's log.cleaner.backoff.ms: how long an idle
// cleaner waits before looking again. Short enough that a topic stays near
// its min.cleanable.dirty.ratio, long enough that idle brokers do nothing.
const DefaultCleanerBackoff = 15 * time.Second

// CleanTarget is a partition the cleaner may clean, with its name for logs.
type CleanTarget struct {
	Name string
	P    *Partition
}

// CleanerStats are the cleaner's totals since it started.
type CleanerStats struct {
	Runs           int64 // cleans that rewrote something
	Failures       int64 // cleans that failed (the partition is marked uncleanable)
	BytesRead      int64
	BytesWritten   int64
	RecordsRemoved int64
	LastDuration   time.Duration
}

// Cleaner runs the cleans of compacted partitions in the background: each
// thread takes the dirtiest partition that is due, cleans it, and looks
// again, pausing Backoff when none is due. A clean that fails logs the
// error and marks its partition uncleanable; the broker goes on.
type Cleaner struct {
	opts     CleanerOptions
	list     func() []CleanTarget
	throttle *Throttle
	wake     chan struct{}
	maps     []*offsetMap
	mapMu    []sync.Mutex

	mu   sync.Mutex
	busy map[*Partition]bool // being cleaned, guarded by mu
	idle *sync.Cond          // on mu: a partition left busy

	runs, failures, read, written, removed, lastDur atomic.Int64
}

// NewCleaner returns a cleaner over the partitions list returns (called at
// each look, so new topics are seen). Start it with Run.
func NewCleaner(opts CleanerOptions, list func() []CleanTarget) *Cleaner {
	if opts.BufferBytes <= 0 {
		opts.BufferBytes = DefaultCleanerBufferBytes
	}
	if opts.Threads <= 0 {
		opts.Threads = 1
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultCleanerBackoff
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Cleaner{opts: opts, list: list, throttle: NewThrottle(opts.IOBytesPerSecond),
		wake: make(chan struct{}, 1), busy: map[*Partition]bool{},
		mapMu: make([]sync.Mutex, opts.Threads)}
	c.idle = sync.NewCond(&c.mu)
	for range opts.Threads {
		// Allocated by the first clean, as large as it needs: a broker
		// without compacted topics pays nothing.
		c.maps = append(c.maps, nil)
	}
	return c
}

// Run cleans until ctx is done.
func (c *Cleaner) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range c.opts.Threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.thread(ctx, i)
		}()
	}
	wg.Wait()
}

// Wake makes idle threads look for work now (a config changed).
func (c *Cleaner) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Cleaner) thread(ctx context.Context, i int) {
	for ctx.Err() == nil {
		t, ok := c.pick(time.Now())
		if !ok {
			timer := time.NewTimer(c.opts.Backoff)
			select {
			case <-ctx.Done():
			case <-c.wake:
			case <-timer.C:
			}
			timer.Stop()
			continue
		}
		c.cleanOne(ctx, i, t, false)
		c.done(t.P)
	}
}

func (c *Cleaner) done(p *Partition) {
	c.mu.Lock()
	delete(c.busy, p)
	c.idle.Broadcast()
	c.mu.Unlock()
}

// pick returns the due partition with the highest dirty ratio that no
// other thread is cleaning, marking it busy.
func (c *Cleaner) pick(now time.Time) (CleanTarget, bool) {
	var best CleanTarget
	bestRatio := -1.0
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.list() {
		if c.busy[t.P] || !t.P.Compacted() {
			continue
		}
		st := t.P.CleanState(now)
		if st.Due && st.Ratio > bestRatio {
			best, bestRatio = t, st.Ratio
		}
	}
	if best.P == nil {
		return best, false
	}
	c.busy[best.P] = true
	return best, true
}

// cleanOne cleans t with thread i's offset map.
func (c *Cleaner) cleanOne(ctx context.Context, i int, t CleanTarget, force bool) {
	c.mapMu[i].Lock()
	defer c.mapMu[i].Unlock()
	began := time.Now()
	st, err := t.P.Clean(ctx, CleanOptions{Now: began, Force: force, Throttle: c.throttle,
		BufferBytes: c.opts.BufferBytes / int64(c.opts.Threads), buf: c.maps[i], keep: &c.maps[i]})
	c.read.Add(st.BytesRead)
	c.written.Add(st.BytesWritten)
	c.removed.Add(st.RecordsRemoved)
	if st.Passes > 0 {
		c.runs.Add(1)
		c.lastDur.Store(int64(time.Since(began)))
		c.opts.Logger.Info("cleaned partition log", "partition", t.Name, "passes", st.Passes,
			"bytes_before", st.SizeBefore, "bytes_after", st.SizeAfter, "records_removed", st.RecordsRemoved, "took", time.Since(began).Round(time.Millisecond))
	}
	// A partition closed under the clean (its topic deleted, the broker
	// stopping) fails with whatever its vanished files gave: not a fault.
	if err != nil && ctx.Err() == nil && !errors.Is(err, ErrClosed) && !t.P.isClosed() {
		c.failures.Add(1)
		t.P.markUncleanable(err)
		c.opts.Logger.Error("cleaning a partition log failed; it is not cleaned again until the broker restarts (its data is served as before)",
			"partition", t.Name, "err", err)
	}
}

// CleanNow cleans every compacted partition that has anything to clean,
// due or not, and returns when done: for tests and tools that must see a
// compacted log.
func (c *Cleaner) CleanNow(ctx context.Context) error {
	for _, t := range c.list() {
		if !t.P.Compacted() {
			continue
		}
		c.mu.Lock()
		for c.busy[t.P] {
			// A thread is on it; its clean may predate the caller's
			// writes, so wait for it and clean again.
			c.idle.Wait()
		}
		c.busy[t.P] = true
		c.mu.Unlock()
		c.cleanOne(ctx, 0, t, true)
		c.done(t.P)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// Stats returns the cleaner's totals.
func (c *Cleaner) Stats() CleanerStats {
	return CleanerStats{Runs: c.runs.Load(), Failures: c.failures.Load(), BytesRead: c.read.Load(),
		BytesWritten: c.written.Load(), RecordsRemoved: c.removed.Load(), LastDuration: time.Duration(c.lastDur.Load())}
}

func (p *Partition) isClosed() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.closed
}

// markUncleanable records why the cleaner gave up on the log.
func (p *Partition) markUncleanable(err error) {
	p.mu.Lock()
	p.uncleanable = err
	p.mu.Unlock()
}
