package txn

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/sluicehq/sluice/broker/group"
	"github.com/sluicehq/sluice/broker/internal/entrylog"
	"github.com/sluicehq/sluice/broker/internal/groupsync"
)

const (
	logName = "transactions.log"
	// compactMinEntries and the live ratio decide when the log is
	// rewritten with only the latest state of each transactional id.
	compactMinEntries = 10000
)

// record is the durable state of one transactional id, written whole at
// every transition that must survive a crash (as Kafka writes
// __transaction_state). Deleted marks an expired id.
type record struct {
	ID            string                    `json:"id"`
	Deleted       bool                      `json:"del,omitempty"`
	ProducerID    int64                     `json:"pid"`
	Epoch         int16                     `json:"ep"`
	PrevProducer  int64                     `json:"ppid"`
	PrevEpoch     int16                     `json:"pep"`
	TimeoutMs     int32                     `json:"to"`
	State         State                     `json:"st"`
	Partitions    []group.TopicPartition    `json:"ps,omitempty"`
	Groups        []string                  `json:"gs,omitempty"`
	Offsets       map[string][]group.Offset `json:"os,omitempty"`
	StartedMs     int64                     `json:"start,omitempty"`
	Result        Result                    `json:"res,omitempty"` // of a transaction being prepared
	LastUpdatedMs int64                     `json:"upd"`
}

// stateLog is the coordinator's append-only log: each entry is a length
// (u32), a CRC-32C (u32) of the body and the JSON body. Entries are written
// under the coordinator's lock, in the order of the transitions, and made
// durable by syncTo outside it, so concurrent transactions share fsyncs
// (group commit, as the partition logs do). A failed write or fsync leaves
// the log unusable until the broker restarts and reloads what is on disk:
// the in-memory state may then be ahead of it.
type stateLog struct {
	path string

	mu      sync.Mutex // f, w, entries, written, err
	f       *logFile
	w       *bufio.Writer
	entries int   // in the file, for deciding on compaction
	written int64 // entries written since open, the sequence syncTo counts in
	err     error

	synced groupsync.Syncer // counts entries, as written does
}

// logFile is the open log file; compaction replaces it while an fsync of
// the old one may be running, so the last user closes it.
type logFile struct {
	*os.File
	refs atomic.Int32
}

func newLogFile(f *os.File) *logFile {
	lf := &logFile{File: f}
	lf.refs.Store(1)
	return lf
}

func (f *logFile) release() {
	if f.refs.Add(-1) == 0 {
		f.Close()
	}
}

// openLog opens (creating) the log in dir and returns the latest record of
// every live transactional id. A torn or corrupt tail (a crash during an
// append) is cut off.
func openLog(dir string) (*stateLog, map[string]record, error) {
	l := &stateLog{path: filepath.Join(dir, logName)}
	recs := map[string]record{}
	f, n, err := entrylog.Open(l.path, func(body []byte) error { return replayEntry(recs, body) })
	if err != nil {
		return nil, nil, err
	}
	l.f, l.w, l.entries = newLogFile(f), bufio.NewWriter(f), n
	return l, recs, nil
}

// replay decodes entries from r, which holds size bytes, until the end or
// the first torn or corrupt one, returning the latest record per id, the
// byte length of the intact prefix and its entry count. A body that passes
// its CRC but is not a valid record is damage a torn write cannot explain,
// and an error.
func replay(r io.Reader, size int64) (map[string]record, int64, int, error) {
	recs := map[string]record{}
	good, n, err := entrylog.Replay(r, size, func(body []byte) error { return replayEntry(recs, body) })
	if err != nil {
		return nil, 0, 0, err
	}
	return recs, good, n, nil
}

// replayEntry applies one entry's body to recs.
func replayEntry(recs map[string]record, body []byte) error {
	var rec record
	if err := json.Unmarshal(body, &rec); err != nil {
		return fmt.Errorf("%w; the file is damaged beyond a torn tail: move it away to start without transaction state", err)
	}
	if err := rec.valid(); err != nil {
		return fmt.Errorf("%w; move the file away to start without transaction state", err)
	}
	if rec.Deleted {
		delete(recs, rec.ID)
	} else {
		recs[rec.ID] = rec
	}
	return nil
}

func (r record) valid() error {
	switch {
	case r.ID == "":
		return errors.New("empty transactional id")
	case r.Deleted:
		return nil
	case r.ProducerID < 0 || r.Epoch < 0:
		return fmt.Errorf("transactional id %q: producer id %d epoch %d", r.ID, r.ProducerID, r.Epoch)
	case !r.State.known():
		return fmt.Errorf("transactional id %q: unknown state %q", r.ID, r.State)
	}
	return nil
}

func encodeEntry(dst []byte, rec record) []byte {
	dst, _ = entrylog.Append(dst, rec) // plain data: cannot fail
	return dst
}

// write appends rec, without waiting for it to be durable, and returns
// the sequence number to pass to syncTo. live is the number of ids after
// it, for deciding on compaction, and all returns them if compaction runs.
func (l *stateLog) write(rec record, live int, all func() []record) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return 0, l.err
	}
	if _, err := l.w.Write(encodeEntry(nil, rec)); err != nil {
		l.err = fmt.Errorf("write %s: %w", l.path, err)
		return 0, l.err
	}
	if err := l.w.Flush(); err != nil {
		l.err = fmt.Errorf("write %s: %w", l.path, err)
		return 0, l.err
	}
	l.written++
	l.entries++
	if l.entries >= compactMinEntries && l.entries > 2*live {
		if err := l.compact(all()); err != nil {
			l.err = fmt.Errorf("compact %s: %w", l.path, err)
			return 0, l.err
		}
	}
	return l.written, nil
}

// position is the sequence number of the last entry written.
func (l *stateLog) position() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.written
}

// syncTo makes every entry up to sequence seq durable. Concurrent callers
// share fsyncs: while one runs, later callers wait for the next, which
// covers all of them.
func (l *stateLog) syncTo(seq int64) error {
	return l.synced.Sync(seq, func() (int64, error) {
		l.mu.Lock()
		f, target, err := l.f, l.written, l.err
		f.refs.Add(1)
		l.mu.Unlock()
		defer f.release()
		if err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			err = fmt.Errorf("fsync %s: %w", l.path, err)
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
			return 0, err
		}
		return target, nil
	})
}

// compact replaces the log with one entry per live id, atomically and
// durably. The caller holds l.mu.
func (l *stateLog) compact(recs []record) error {
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	f, err := entrylog.Rewrite(l.path, func(add func(any) error) error {
		for _, r := range recs {
			if err := add(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	l.f.release()
	l.f, l.w, l.entries = newLogFile(f), bufio.NewWriter(f), len(recs)
	// Everything written so far is in the new file, fsynced.
	l.synced.Advance(l.written)
	return nil
}

func (l *stateLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.w.Flush()
	if err == nil {
		err = l.f.Sync()
	}
	l.f.release()
	return err
}
