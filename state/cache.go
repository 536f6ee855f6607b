package state

import (
	"sync"

	"github.com/sluicehq/sluice/engine"
)

// The read cache: the values of recently read or written keys as the local
// stores hold them, so a step's reads and Prepare's reads of the values it
// replaces skip a bbolt read transaction and B+tree search per key. It
// mirrors the stores: a prepared write updates it after its transaction
// commits (the overlay still shadows those keys until the sink commits
// them, so a view never reads a prepared, uncommitted value through it),
// and anything else that changes a store (restore, rebuild, close) drops
// the task's entries. Absent keys are cached too: a window's first record
// reads a key that is not there yet.
const (
	// DefaultCacheBytes is the read cache's budget when Options.CacheBytes
	// is 0: room for some 500,000 small entries (an aggregate's window
	// keys and counters), a few per cent of the process's memory.
	DefaultCacheBytes = 64 << 20
	// cacheEntryOverhead is what an entry costs beyond its key and value
	// bytes: the map slot, the string and slice headers, the allocation
	// rounding. Counted so many small entries cannot exceed the budget.
	cacheEntryOverhead = 64
	// cacheEvictShare: once over budget, entries are evicted until the
	// cache is this share (in 1/8ths) of it, so eviction runs once per
	// many inserts rather than on each.
	cacheEvictShare = 7
)

// readCache is shared by a Durable's stores; safe from any goroutine.
type readCache struct {
	mu   sync.Mutex
	max  int64 // <0: disabled
	size int64
	gen  uint64 // bumped by each drop, so a read begun before it does not insert
	m    map[engine.Task]map[string]cacheEntry
}

type cacheEntry struct {
	value []byte // never modified once in the cache
	ok    bool   // false: the key is absent
}

func newReadCache(max int64) *readCache {
	return &readCache{max: max, m: map[engine.Task]map[string]cacheEntry{}}
}

// lookup returns k's cached value, and the generation to pass to fill on a
// miss.
func (c *readCache) lookup(t engine.Task, k []byte) (e cacheEntry, hit bool, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, hit = c.m[t][string(k)]
	return e, hit, c.gen
}

// fill caches what a read found, unless the cache was dropped since the
// lookup (gen) or a write cached a newer value meanwhile.
func (c *readCache) fill(t engine.Task, k, v []byte, ok bool, gen uint64) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if _, there := c.m[t][string(k)]; there {
		return
	}
	var val []byte
	if ok {
		val = append(make([]byte, 0, len(v)), v...)
	}
	c.putLocked(t, string(k), cacheEntry{val, ok})
}

// wrote caches a prepared epoch's writes, now in task t's store. The
// values are kept, not copied: the overlay never modifies them.
func (c *readCache) wrote(t engine.Task, ws []write) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range ws {
		c.putLocked(t, string(w.key), cacheEntry{w.value, !w.deleted})
	}
}

func (c *readCache) putLocked(t engine.Task, k string, e cacheEntry) {
	byKey := c.m[t]
	if byKey == nil {
		byKey = map[string]cacheEntry{}
		c.m[t] = byKey
	}
	if old, there := byKey[k]; there {
		c.size -= int64(len(k) + len(old.value) + cacheEntryOverhead)
	}
	byKey[k] = e
	c.size += int64(len(k) + len(e.value) + cacheEntryOverhead)
	if c.size > c.max {
		c.evictLocked()
	}
}

// evictLocked drops entries in map order (pseudo-random) until the cache
// is cacheEvictShare/8 of its budget.
func (c *readCache) evictLocked() {
	target := c.max / 8 * cacheEvictShare
	for t, byKey := range c.m {
		for k, e := range byKey {
			if c.size <= target {
				return
			}
			delete(byKey, k)
			c.size -= int64(len(k) + len(e.value) + cacheEntryOverhead)
		}
		if len(byKey) == 0 {
			delete(c.m, t)
		}
	}
}

// drop forgets task t's entries: its store changed other than by a
// prepared write (restore, rebuild) or was closed.
func (c *readCache) drop(t engine.Task) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for k, e := range c.m[t] {
		c.size -= int64(len(k) + len(e.value) + cacheEntryOverhead)
	}
	delete(c.m, t)
}

// dropAll forgets every entry.
func (c *readCache) dropAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.m)
	c.size = 0
}
