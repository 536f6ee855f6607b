package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sluicehq/sluice/engine"
)

// The local store of one task: a bbolt file, DATA/state/PIPELINE/TASK/state.db.
// bbolt keeps the data in a memory-mapped B+tree, so the heap does not grow
// with the state (the kernel's page cache holds what is read), reads run
// beside the one writer without locks, ordered range scans are cursor
// seeks, and a write transaction is atomic and durable (one fsync) — which
// is what a prepared epoch needs. Pebble would serve too, but brings an LSM
// engine and its background compactions for stores that change a batch at a
// time.
const (
	storeFile = "state.db"
	// storeFormat is the layout below; a store of another format is rebuilt
	// from the changelog (or refused, without one).
	storeFormat = 1
	// storeLockTimeout bounds the wait for a store another process (or a
	// closing instance in this one) still holds: a task that just moved
	// between two processes sharing a data directory. Past it the restore
	// fails and is retried with the pipeline's backoff.
	storeLockTimeout = 10 * time.Second
	// staleStoreAge: a store not caught up with the changelog for this long
	// is rebuilt from it instead, because records it has not read may be
	// tombstones that compaction dropped since (Kafka's default
	// delete.retention.ms is 24h; this is half, to leave a margin).
	staleStoreAge = 12 * time.Hour
	// scanChunk is how many entries a scan copies out of one read
	// transaction before calling back; no transaction is held while the
	// caller's function runs (bbolt's remapping would deadlock on a read
	// transaction opened inside another on the same goroutine), and memory
	// stays bounded whatever the range.
	scanChunk = 256
)

var (
	bucketData = []byte("data") // storeKey -> value: the state
	// bucketUndo holds, for each key the last prepared epoch changed, its
	// value before (undoValue), so that epoch can be reverted.
	bucketUndo = []byte("undo")
	// bucketFix holds keys reverted by a restore whose correction records
	// are not yet in the changelog.
	bucketFix  = []byte("fix")
	bucketMeta = []byte("meta")

	metaFormat  = []byte("format")
	metaEpoch   = []byte("epoch")   // the epoch the data is at
	metaOffset  = []byte("offset")  // the next changelog offset to read
	metaWritten = []byte("written") // unix nanoseconds of the last catch-up or prepare
	// metaUndoFrom: with a changelog, the offset of the last prepared
	// epoch's first record, from which a restore reads it again to revert.
	metaUndoFrom = []byte("undo-from")
	metaKeys     = []byte("keys")
	metaBytes    = []byte("bytes") // sum of key and value lengths
)

// store is one task's local store. Its writes come from the batch loop;
// get and scan also from the intake (bbolt orders them).
type store struct {
	task engine.Task
	dir  string
	db   *bolt.DB

	// The meta as of the last write; only the loop writes them.
	epoch    uint64
	offset   int64
	undoFrom int64
	written  time.Time
	// keys and bytes are read by metrics and the API from any goroutine.
	keys, bytes atomic.Int64
}

// openStore opens (creating) the store in dir. A store that cannot be read
// returns an error wrapping errUnreadable.
func openStore(dir string, task engine.Task) (*store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state: %w; pass --data with a writable directory", err)
	}
	path := filepath.Join(dir, storeFile)
	db, err := openBolt(path)
	if err != nil {
		return nil, err
	}
	s := &store{task: task, dir: dir, db: db}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketData, bucketUndo, bucketFix, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		if f := m.Get(metaFormat); f == nil {
			return putUint(m, metaFormat, storeFormat)
		} else if len(f) != 8 || binary.BigEndian.Uint64(f) != storeFormat {
			return fmt.Errorf("%w: format %x, this Sluice writes %d", errUnreadable, f, storeFormat)
		}
		return nil
	})
	if err == nil {
		err = s.loadMeta()
	}
	if err != nil {
		db.Close()
		if !errors.Is(err, errUnreadable) {
			err = fmt.Errorf("%w: %v", errUnreadable, err)
		}
		return nil, fmt.Errorf("state: store %s: %w", path, err)
	}
	return s, nil
}

var errUnreadable = errors.New("unreadable")

// openBolt opens a bbolt file, turning the panics bbolt raises on some
// damaged files into errors.
func openBolt(path string) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("state: store %s: %w: %v", path, errUnreadable, r)
		}
	}()
	// The free-page list is not written at each commit (bbolt rebuilds it
	// when it opens the file): one write less per prepared epoch.
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: storeLockTimeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, engine.Retryable(fmt.Errorf("state: store %s is held by another process; it is let go when that process stops running the task", path))
	}
	if err != nil {
		return nil, fmt.Errorf("state: store %s: %w: %v", path, errUnreadable, err)
	}
	return db, nil
}

func (s *store) loadMeta() error {
	return s.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		s.epoch = getUint(m, metaEpoch)
		s.offset = int64(getUint(m, metaOffset))
		s.undoFrom = int64(getUint(m, metaUndoFrom))
		if w := getUint(m, metaWritten); w != 0 {
			s.written = time.Unix(0, int64(w))
		}
		s.keys.Store(int64(getUint(m, metaKeys)))
		s.bytes.Store(int64(getUint(m, metaBytes)))
		return nil
	})
}

func (s *store) close() error { return s.db.Close() }

// remove closes the store and deletes its file.
func (s *store) remove() error {
	s.db.Close()
	return os.RemoveAll(s.dir)
}

func getUint(b *bolt.Bucket, k []byte) uint64 {
	if v := b.Get(k); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func putUint(b *bolt.Bucket, k []byte, v uint64) error {
	return b.Put(k, binary.BigEndian.AppendUint64(nil, v))
}

// get appends k's value to dst.
func (s *store) get(k, dst []byte) ([]byte, bool, error) {
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketData).Get(k)
		if v != nil {
			ok, dst = true, append(dst, v...)
		}
		return nil
	})
	return dst, ok, err
}

// kv is a key and value copied out of the store.
type kv struct{ key, value []byte }

// scan calls fn for each key in [from, to) (to nil: no end) in order, in
// chunks of scanChunk copied out of a read transaction, until fn returns
// false.
func (s *store) scan(from, to []byte, fn func(k, v []byte) bool) error {
	start := bytes.Clone(from)
	skipStart := false
	buf := make([]kv, 0, scanChunk)
	for {
		buf = buf[:0]
		more := false
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketData).Cursor()
			k, v := c.Seek(start)
			if skipStart && k != nil && bytes.Equal(k, start) {
				k, v = c.Next()
			}
			for ; k != nil && (to == nil || bytes.Compare(k, to) < 0); k, v = c.Next() {
				if len(buf) == scanChunk {
					more = true
					break
				}
				buf = append(buf, kv{bytes.Clone(k), bytes.Clone(v)})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, e := range buf {
			if !fn(e.key, e.value) {
				return nil
			}
		}
		if !more {
			return nil
		}
		start, skipStart = buf[len(buf)-1].key, true
	}
}

// write is one key's new value in a prepared epoch.
type write struct {
	key     []byte
	value   []byte
	deleted bool
}

// prev is a key's value before a prepared epoch.
type prev struct {
	value []byte
	ok    bool
}

// prevs returns the current value of each key.
func (s *store) prevs(ws []write) ([]prev, error) {
	out := make([]prev, len(ws))
	err := s.db.View(func(tx *bolt.Tx) error {
		d := tx.Bucket(bucketData)
		for i, w := range ws {
			if v := d.Get(w.key); v != nil {
				out[i] = prev{bytes.Clone(v), true}
			}
		}
		return nil
	})
	return out, err
}

// undoValue encodes a key's value before the last prepared epoch: 0 = it
// had none, 1 followed by the value.
func undoValue(v []byte, ok bool) []byte {
	if !ok {
		return []byte{0}
	}
	return append([]byte{1}, v...)
}

// set and del change the data and keep the key and byte counts.
func set(tx *bolt.Tx, k, v []byte, keys, size *int64) error {
	d := tx.Bucket(bucketData)
	if old := d.Get(k); old != nil {
		*size -= int64(len(k) + len(old))
	} else {
		*keys++
	}
	*size += int64(len(k) + len(v))
	return d.Put(k, v)
}

func del(tx *bolt.Tx, k []byte, keys, size *int64) error {
	d := tx.Bucket(bucketData)
	if old := d.Get(k); old != nil {
		*keys--
		*size -= int64(len(k) + len(old))
		return d.Delete(k)
	}
	return nil
}

// update runs fn in a write transaction with the counts and meta kept:
// fn changes the data through set and del and may change *epoch and
// *offset, which are stored with the write time.
func (s *store) update(fn func(tx *bolt.Tx, keys, size *int64, epoch *uint64, offset *int64) error) error {
	keys, size := s.keys.Load(), s.bytes.Load()
	epoch, offset := s.epoch, s.offset
	now := time.Now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := fn(tx, &keys, &size, &epoch, &offset); err != nil {
			return err
		}
		m := tx.Bucket(bucketMeta)
		return errors.Join(putUint(m, metaEpoch, epoch), putUint(m, metaOffset, uint64(offset)),
			putUint(m, metaWritten, uint64(now.UnixNano())),
			putUint(m, metaKeys, uint64(keys)), putUint(m, metaBytes, uint64(size)))
	})
	if err != nil {
		return fmt.Errorf("state: task %d: write local store: %w", s.task, err)
	}
	s.epoch, s.offset, s.written = epoch, offset, now
	s.keys.Store(keys)
	s.bytes.Store(size)
	return nil
}

// resetBucket empties a bucket.
func resetBucket(tx *bolt.Tx, name []byte) error {
	if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
		return err
	}
	_, err := tx.CreateBucket(name)
	return err
}

// prepare writes epoch's changes; prevs are the values they replace (as
// prevs read them). With undo the store keeps those as the undo of epoch
// (no changelog); else the changelog's records of epoch, from offset
// first, are the undo. offset is the changelog's next offset after them
// (0 without a changelog).
func (s *store) prepare(epoch uint64, first, offset int64, ws []write, prevs []prev, undo bool) error {
	err := s.update(func(tx *bolt.Tx, keys, size *int64, e *uint64, o *int64) error {
		var u *bolt.Bucket
		if undo {
			if err := resetBucket(tx, bucketUndo); err != nil {
				return err
			}
			u = tx.Bucket(bucketUndo)
		}
		d := tx.Bucket(bucketData)
		for i, w := range ws {
			p := prevs[i]
			if u != nil {
				if err := u.Put(w.key, undoValue(p.value, p.ok)); err != nil {
					return err
				}
			}
			if p.ok {
				*keys--
				*size -= int64(len(w.key) + len(p.value))
			}
			var err error
			switch {
			case !w.deleted:
				*keys++
				*size += int64(len(w.key) + len(w.value))
				err = d.Put(w.key, w.value)
			case p.ok:
				err = d.Delete(w.key)
			}
			if err != nil {
				return err
			}
		}
		*e = epoch
		if offset > 0 {
			*o = offset
			return putUint(tx.Bucket(bucketMeta), metaUndoFrom, uint64(first))
		}
		return nil
	})
	if err == nil && offset > 0 {
		s.undoFrom = first
	}
	return err
}

// revert puts back the values the last prepared epoch replaced and sets the
// store's epoch to epoch; with fix, the keys are remembered as needing
// correction records in the changelog.
func (s *store) revert(epoch uint64, fix bool) error {
	return s.update(func(tx *bolt.Tx, keys, size *int64, e *uint64, o *int64) error {
		var undone []kv
		if err := tx.Bucket(bucketUndo).ForEach(func(k, v []byte) error {
			undone = append(undone, kv{bytes.Clone(k), bytes.Clone(v)})
			return nil
		}); err != nil {
			return err
		}
		for _, u := range undone {
			var err error
			if len(u.value) > 0 && u.value[0] == 1 {
				err = set(tx, u.key, u.value[1:], keys, size)
			} else {
				err = del(tx, u.key, keys, size)
			}
			if err == nil && fix {
				err = tx.Bucket(bucketFix).Put(u.key, []byte{1})
			}
			if err != nil {
				return err
			}
		}
		*e = epoch
		return resetBucket(tx, bucketUndo)
	})
}

// logRecord is a changelog record as the restore reads it.
type logRecord struct {
	key, value []byte // value nil: a tombstone
	offset     int64
}

// applyLog applies changelog records read while restoring to committed: a
// record of an epoch up to committed sets its value; one of committed+1 (a
// prepared epoch the sink did not commit) sets the value it replaced and
// marks the key for correction.
func (s *store) applyLog(recs []logRecord, committed uint64) error {
	if len(recs) == 0 {
		return nil
	}
	return s.update(func(tx *bolt.Tx, keys, size *int64, e *uint64, o *int64) error {
		fix := tx.Bucket(bucketFix)
		for _, r := range recs {
			if r.value == nil {
				if err := errors.Join(del(tx, r.key, keys, size), fix.Delete(r.key)); err != nil {
					return err
				}
				continue
			}
			c, err := decodeChange(r.value)
			if err != nil {
				return fmt.Errorf("changelog offset %d: %w", r.offset, err)
			}
			switch {
			case c.epoch <= committed && c.deleted:
				err = errors.Join(del(tx, r.key, keys, size), fix.Delete(r.key))
			case c.epoch <= committed:
				err = errors.Join(set(tx, r.key, c.value, keys, size), fix.Delete(r.key))
			case c.epoch == committed+1 && c.hasPrev:
				err = errors.Join(set(tx, r.key, c.prev, keys, size), fix.Put(r.key, []byte{1}))
			case c.epoch == committed+1:
				err = errors.Join(del(tx, r.key, keys, size), fix.Put(r.key, []byte{1}))
			default:
				return fmt.Errorf("%w: changelog offset %d is of epoch %d, and the sink committed only %d",
					errAhead, r.offset, c.epoch, committed)
			}
			if err != nil {
				return err
			}
		}
		*o = recs[len(recs)-1].offset + 1
		return nil
	})
}

var errAhead = errors.New("the state is ahead of the sink")

// fixes returns the keys marked for correction with their current values.
func (s *store) fixes() ([]write, error) {
	var out []write
	err := s.db.View(func(tx *bolt.Tx) error {
		d := tx.Bucket(bucketData)
		return tx.Bucket(bucketFix).ForEach(func(k, _ []byte) error {
			v := d.Get(k)
			out = append(out, write{key: bytes.Clone(k), value: bytes.Clone(v), deleted: v == nil})
			return nil
		})
	})
	return out, err
}

// settle records that the store holds exactly epoch's state, read from the
// changelog up to offset (0: no changelog), with no undo and no corrections
// owed.
func (s *store) settle(epoch uint64, offset int64) error {
	return s.update(func(tx *bolt.Tx, _, _ *int64, e *uint64, o *int64) error {
		*e = epoch
		if offset > 0 {
			*o = offset
		}
		return errors.Join(resetBucket(tx, bucketUndo), resetBucket(tx, bucketFix))
	})
}
