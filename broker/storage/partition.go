package storage

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/broker/internal/groupsync"
)

// Config tunes one partition log. Zero values take the defaults named.
type Config struct {
	// SegmentBytes rolls the active segment when an append would take it
	// past this size (default DefaultSegmentBytes, at most MaxSegmentBytes).
	SegmentBytes int64
	// SegmentAge rolls the active segment once its first batch is this old
	// (default 7 days, as Kafka's segment.ms).
	SegmentAge time.Duration
	// RetentionAge deletes sealed segments whose newest record is older
	// (default 168h, as Kafka's retention.ms; negative keeps forever).
	RetentionAge time.Duration
	// RetentionBytes deletes the oldest sealed segments while the log would
	// still hold at least this many bytes without them (0 or negative: no
	// limit, Kafka's retention.bytes=-1).
	RetentionBytes int64
	// MaxBatchBytes rejects larger batches with ErrTooLarge (default: no
	// limit besides the protocol frame size).
	MaxBatchBytes int64
	// IndexIntervalBytes is the log distance between sparse index entries
	// (default DefaultIndexIntervalBytes).
	IndexIntervalBytes int64
	// Logger receives recovery and retention messages (default slog.Default).
	Logger *slog.Logger
	// Name is how log lines name the partition ("orders-3"; default: its
	// directory).
	Name string

	// Compact says cleanup.policy has compact: the cleaner (clean.go)
	// keeps the latest record per key. KeepForever says it lacks delete:
	// retention by age and size is off (compact alone).
	Compact     bool
	KeepForever bool
	// DeleteRetention keeps a tombstone (and a transaction marker whose
	// data is gone) this long after the cleaner first cleaned it (Kafka's
	// delete.retention.ms; default 1 day).
	DeleteRetention time.Duration
	// MinCleanableRatio is the share of dirty bytes at which the cleaner
	// takes the log (min.cleanable.dirty.ratio; 0 takes the default 0.5,
	// use a tiny positive value for "any").
	MinCleanableRatio float64
	// MinCompactionLag keeps records younger than this out of cleaning
	// (min.compaction.lag.ms; default 0). MaxCompactionLag cleans a log
	// whose oldest dirty record is older, whatever its ratio
	// (max.compaction.lag.ms; 0: no such bound).
	MinCompactionLag time.Duration
	MaxCompactionLag time.Duration
}

func (c Config) withDefaults() Config {
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = DefaultSegmentBytes
	}
	c.SegmentBytes = min(c.SegmentBytes, MaxSegmentBytes)
	if c.SegmentAge <= 0 {
		c.SegmentAge = 7 * 24 * time.Hour
	}
	if c.RetentionAge == 0 {
		c.RetentionAge = 168 * time.Hour
	}
	if c.IndexIntervalBytes <= 0 {
		c.IndexIntervalBytes = DefaultIndexIntervalBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.DeleteRetention <= 0 {
		c.DeleteRetention = DefaultDeleteRetention
	}
	if c.MinCleanableRatio <= 0 {
		c.MinCleanableRatio = DefaultMinCleanableRatio
	}
	return c
}

// Partition is one partition's log. Appends are serialised; reads run
// concurrently with appends and each other.
//
// Locking. The concurrency tests (concurrency_test.go, run with -race) and
// the assertions of lockcheck.go check these rules:
//
//  1. dir never changes after OpenPartition; it is read without a lock.
//     Until OpenPartition returns, nothing else sees the partition and
//     recovery writes its fields without one.
//  2. mu guards every other field except synced, and the fields of the
//     segments in segs (see segment). Changing any of them takes mu for
//     writing, reading them takes it at least for reading.
//  3. File I/O on a segment's bytes runs outside mu, except an append's
//     own write and what roll and Close do (fsync, index files, snapshot),
//     which hold mu for writing so no append sees a half-rolled log. A
//     read takes, under mu, the segment, a copy of its size, index and
//     next offset, and a reference (acquire); it unlocks, reads with ReadAt
//     and releases. The bytes below a copied size never change: appends
//     only add past it and a failed append truncates back to it.
//  4. mu is a leaf: while holding it the partition takes no other lock of
//     its own and calls out only to the logger and to non-blocking sends on
//     waiters' channels, so callers may hold their own locks when calling in.
//  5. synced has its own lock, never held together with mu: the syncer runs
//     its flush outside its lock, and the flush takes mu (for reading) only
//     to find the target; the fsync itself holds neither, only a reference
//     to the active segment.
type Partition struct {
	dir string

	mu   sync.RWMutex
	cfg  Config
	segs []*segment // sorted by base; the last one takes appends
	end  int64      // log end offset: the next offset to assign
	// start is the log start offset DeleteRecords set (logstart.go); the
	// log starts at the larger of it and the first segment's base.
	start int64
	// startMu serialises DeleteRecordsBefore calls, whose checkpoint write
	// runs outside mu. Never taken while holding mu.
	startMu sync.Mutex
	closed  bool
	waiters []waiter
	// producers is the idempotent producer state; see producers.go.
	producers *producerStates

	// Group commit: one fsync at a time; callers that arrive while one runs
	// wait for the next, which covers all of them.
	synced groupsync.Syncer // how far the log is fsynced

	// offline is set at open, never changed: why the partition serves
	// nothing (see corrupt.go). An offline partition is closed from the start.
	offline error
	// corruptFound counts the corrupt batches reads met (corrupt.go).
	corruptFound atomic.Int64

	// cleanMu is held by a clean for its whole run, and by retention and
	// DeleteRecords, the other two changers of the first segments, so a
	// clean's swap finds the segments it read still in place. Never taken
	// while holding mu.
	cleanMu sync.Mutex
	// cleaned is the cleaner's checkpoint (clean.go), guarded by mu.
	cleaned cleanerState
	// uncleanable is why the cleaner gave up on this log (nil if it has
	// not), guarded by mu: a failed clean is not retried until a restart.
	uncleanable error
	// nextHorizonMs is when the earliest tombstone or marker a clean kept
	// may go (Unix ms, 0: none), guarded by mu: a clean is due then even
	// without new dirty bytes.
	nextHorizonMs int64
}

// SetConfig replaces the partition's retention and roll settings.
func (p *Partition) SetConfig(cfg Config) {
	p.mu.Lock()
	if cfg.Name == "" {
		cfg.Name = p.cfg.Name
	}
	p.cfg = cfg.withDefaults()
	p.mu.Unlock()
}

// StartOffset is the first offset still in the log.
func (p *Partition) StartOffset() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.logStart()
}

// EndOffset is the log end offset: the offset the next record will get.
func (p *Partition) EndOffset() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.end
}

// Offsets returns the start and end offsets together.
func (p *Partition) Offsets() (start, end int64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.logStart(), p.end
}

// Size is the bytes of all segments.
func (p *Partition) Size() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var n int64
	for _, s := range p.segs {
		n += s.size
	}
	return n
}

// Close syncs and closes the log. Sections already handed out stay readable
// until released.
func (p *Partition) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.notify(true)
	p.waiters = nil
	active := p.segs[len(p.segs)-1]
	err := active.f.Sync()
	if err == nil && len(active.index) > 0 {
		// Lets the next clean open skip reading the active segment.
		err = active.writeIndexFiles()
	}
	if err == nil {
		err = active.writeTxnIndex()
	}
	if err == nil {
		// Lets the next open skip rebuilding producer state from the log.
		err = p.writeProducerSnapshot()
	}
	p.closeSegments()
	p.mu.Unlock()
	return err
}

func (p *Partition) closeSegments() {
	for _, s := range p.segs {
		s.release()
	}
}

// Dir is the partition's directory.
func (p *Partition) Dir() string { return p.dir }
