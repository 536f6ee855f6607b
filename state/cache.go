package state

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"sync"

	"github.com/sluicehq/sluice/engine"
)

// The read cache: the values of recently read or written keys as the local
// stores hold them, so a step's reads and Prepare's reads of the values it
// replaces skip a bbolt read transaction and B+tree search per key. It
// mirrors the stores: a prepared write updates it after its transaction
// commits (the overlay still shadows those keys until the sink commits
// them, so a view never reads a prepared, uncommitted value through it),
// and anything else that changes a store (restore, rebuild, close) empties
// it. Absent keys are cached too: a window's first record reads a key that
// is not there yet.
//
// Entries live in one append-only byte arena indexed by a map from a hash
// of task and key to an offset: neither holds a pointer per entry, so the
// collector does not scan hundreds of thousands of entries at each cycle
// (a map of strings to slices cost more in GC than it saved in reads).
const (
	// DefaultCacheBytes is the read cache's budget when Options.CacheBytes
	// is 0: room for some 500,000 small entries (an aggregate's window keys
	// and counters), a small share of the process's memory.
	DefaultCacheBytes = 64 << 20
	// cacheIndexEntryBytes is what an entry costs in the index map (key,
	// offset, the map's slack), counted against the budget.
	cacheIndexEntryBytes = 32
	// cacheKeepShare: when the budget is reached the arena is compacted to
	// its live entries; if they still fill more than this share (in 1/8ths)
	// of the budget the cache is emptied instead, so compaction runs once
	// per many inserts rather than on each.
	cacheKeepShare = 6
)

var cacheSeed = maphash.MakeSeed()

// readCache is shared by a Durable's stores; safe from any goroutine.
type readCache struct {
	mu  sync.Mutex
	max int64
	gen uint64 // bumped by each drop, so a read begun before it does not insert
	idx map[uint64]int
	// data holds entries as task (4 bytes), key length (uvarint), key, ok
	// (1 byte), value length (uvarint), value. Bytes once written are never
	// changed (a compaction makes a new arena), so values handed out stay
	// valid.
	data []byte
}

type cacheEntry struct {
	value []byte // never modified
	ok    bool   // false: the key is absent
}

func newReadCache(max int64) *readCache {
	return &readCache{max: max, idx: map[uint64]int{}}
}

func cacheHash(t engine.Task, k []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(cacheSeed)
	var tb [4]byte
	binary.BigEndian.PutUint32(tb[:], uint32(t))
	h.Write(tb[:])
	h.Write(k)
	return h.Sum64()
}

// at decodes the entry at off: its task, key and value.
func (c *readCache) at(off int) (t engine.Task, k []byte, e cacheEntry) {
	d := c.data[off:]
	t = engine.Task(binary.BigEndian.Uint32(d))
	d = d[4:]
	kl, n := binary.Uvarint(d)
	d = d[n:]
	k, d = d[:kl], d[kl:]
	e.ok = d[0] == 1
	vl, n := binary.Uvarint(d[1:])
	d = d[1+n:]
	if e.ok {
		e.value = d[:vl:vl]
	}
	return t, k, e
}

func (c *readCache) size() int64 { return int64(len(c.data)) + int64(len(c.idx))*cacheIndexEntryBytes }

// lookup returns k's cached value, and the generation to pass to fill on a
// miss.
func (c *readCache) lookup(t engine.Task, k []byte) (e cacheEntry, hit bool, gen uint64) {
	h := cacheHash(t, k)
	c.mu.Lock()
	defer c.mu.Unlock()
	if off, there := c.idx[h]; there {
		if et, ek, ee := c.at(off); et == t && bytes.Equal(ek, k) {
			return ee, true, c.gen
		}
	}
	return cacheEntry{}, false, c.gen
}

// fill caches what a read found, unless the cache was dropped since the
// lookup (gen) or a write cached a value for the key meanwhile.
func (c *readCache) fill(t engine.Task, k, v []byte, ok bool, gen uint64) {
	h := cacheHash(t, k)
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if off, there := c.idx[h]; there {
		if et, ek, _ := c.at(off); et == t && bytes.Equal(ek, k) {
			return
		}
	}
	c.putLocked(h, t, k, v, ok)
}

// wrote caches a prepared epoch's writes, now in task t's store.
func (c *readCache) wrote(t engine.Task, ws []write) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range ws {
		c.putLocked(cacheHash(t, w.key), t, w.key, w.value, !w.deleted)
	}
}

func (c *readCache) putLocked(h uint64, t engine.Task, k, v []byte, ok bool) {
	need := int64(4+2*binary.MaxVarintLen32+1+len(k)+len(v)) + cacheIndexEntryBytes
	if need > c.max/8 {
		delete(c.idx, h) // too large to be worth its room; forget any older value
		return
	}
	if c.size()+need > c.max {
		c.compactLocked()
	}
	off := len(c.data)
	c.data = binary.BigEndian.AppendUint32(c.data, uint32(t))
	c.data = binary.AppendUvarint(c.data, uint64(len(k)))
	c.data = append(c.data, k...)
	if ok {
		c.data = append(c.data, 1)
	} else {
		c.data = append(c.data, 0)
		v = nil
	}
	c.data = binary.AppendUvarint(c.data, uint64(len(v)))
	c.data = append(c.data, v...)
	c.idx[h] = off
}

// compactLocked copies the live entries to a new arena, or empties the
// cache if they fill more than cacheKeepShare/8 of the budget.
func (c *readCache) compactLocked() {
	var live int64
	for _, off := range c.idx {
		_, k, e := c.at(off)
		live += int64(4+2*binary.MaxVarintLen32+1+len(k)+len(e.value)) + cacheIndexEntryBytes
	}
	if live > c.max/8*cacheKeepShare {
		clear(c.idx)
		c.data = nil
		return
	}
	old := c.data
	c.data = make([]byte, 0, live)
	for h, off := range c.idx {
		c.idx[h] = len(c.data)
		c.data = append(c.data, old[off:entryEnd(old, off)]...)
	}
}

// entryEnd returns the offset just past the entry at off in data.
func entryEnd(data []byte, off int) int {
	d := data[off+4:]
	kl, n := binary.Uvarint(d)
	p := off + 4 + n + int(kl) + 1
	vl, n := binary.Uvarint(data[p:])
	return p + n + int(vl)
}

// drop forgets the cache's entries: a store changed other than by a
// prepared write (restore, rebuild) or was closed. (One arena serves every
// task, so all of them go; this is rare.)
func (c *readCache) drop(engine.Task) { c.dropAll() }

// dropAll forgets every entry.
func (c *readCache) dropAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.idx)
	c.data = nil
}
