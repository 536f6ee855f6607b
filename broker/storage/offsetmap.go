package storage

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// offsetMap is the cleaner's dedupe buffer: key hash → latest offset, in a
// fixed array allocated once, so a clean's memory does not depend on the
// number of keys. A key is hashed to 128 bits (two independent 64-bit
// maphashes), as Kafka uses MD5's 128: two keys sharing a hash would drop
// the older key's latest value, and at 128 bits that takes about 2^64 keys.
type offsetMap struct {
	slots []mapSlot
	used  int
	limit int // at most this many keys (mapLoadFactor of the slots)
	seeds [2]maphash.Seed
	// latest is the largest offset put.
	latest int64
}

// mapSlot is one entry; off is the offset plus one, so 0 is an empty slot.
type mapSlot struct {
	h1, h2 uint64
	off    int64
}

// mapSlotBytes is the size of one slot: two hash halves and an offset.
const mapSlotBytes = 24

// mapLoadFactor is the share of slots filled before a pass stops adding
// keys: Kafka's log.cleaner.io.buffer.load.factor, 0.9. Linear probing
// stays short up to there.
const mapLoadFactor = 0.9

// newOffsetMap allocates a map in bytes of memory.
func newOffsetMap(bytes int64) *offsetMap {
	n := max(int(bytes/mapSlotBytes), 16)
	return &offsetMap{slots: make([]mapSlot, n), limit: int(float64(n) * mapLoadFactor),
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
}

func (m *offsetMap) reset() {
	clear(m.slots)
	m.used, m.latest = 0, -1
}

// room says n more keys fit for sure.
func (m *offsetMap) room(n int) bool { return m.used+n <= m.limit }

func (m *offsetMap) hash(key []byte) (uint64, uint64) {
	return maphash.Bytes(m.seeds[0], key), maphash.Bytes(m.seeds[1], key)
}

func (m *offsetMap) find(h1, h2 uint64) int {
	i := int(h1 % uint64(len(m.slots)))
	for {
		s := &m.slots[i]
		if s.off == 0 || (s.h1 == h1 && s.h2 == h2) {
			return i
		}
		if i++; i == len(m.slots) {
			i = 0
		}
	}
}

// put records offset as key's latest; the caller checked room.
func (m *offsetMap) put(key []byte, offset int64) {
	h1, h2 := m.hash(key)
	s := &m.slots[m.find(h1, h2)]
	if s.off == 0 {
		m.used++
		s.h1, s.h2 = h1, h2
	}
	s.off = offset + 1
	m.latest = max(m.latest, offset)
}

// get returns key's latest offset, or -1.
func (m *offsetMap) get(key []byte) int64 {
	h1, h2 := m.hash(key)
	return m.slots[m.find(h1, h2)].off - 1
}

// Throttle bounds the cleaner's reads and writes to a byte rate shared by
// all its threads (Kafka's log.cleaner.io.max.bytes.per.second).
type Throttle struct {
	mu   sync.Mutex
	rate float64 // bytes per second
	next time.Time
}

// throttleBurst is how far ahead of the rate the cleaner may run before it
// sleeps: short enough that a burst never takes the disk for long.
const throttleBurst = 50 * time.Millisecond

// NewThrottle returns a throttle of bytesPerSecond, or nil (no limit) if it
// is 0 or less.
func NewThrottle(bytesPerSecond float64) *Throttle {
	if bytesPerSecond <= 0 {
		return nil
	}
	return &Throttle{rate: bytesPerSecond}
}

// wait accounts for n bytes of I/O, sleeping while the cleaner is ahead of
// the rate.
func (t *Throttle) wait(ctx context.Context, n int64) error {
	if t == nil || n <= 0 {
		return ctx.Err()
	}
	t.mu.Lock()
	now := time.Now()
	if t.next.Before(now) {
		t.next = now
	}
	t.next = t.next.Add(time.Duration(float64(n) / t.rate * float64(time.Second)))
	ahead := t.next.Sub(now)
	t.mu.Unlock()
	if ahead <= throttleBurst {
		return ctx.Err()
	}
	timer := time.NewTimer(ahead - throttleBurst)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
