package txn

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/sluicehq/sluice/broker/group"
)

const (
	logFile = "transactions.log"
	// maxEntryBytes bounds one log entry when reading the log back; a
	// length beyond it means a torn or corrupt tail.
	maxEntryBytes = 64 << 20
	// compactMinEntries and the live ratio decide when the log is
	// rewritten with only the latest state of each transactional id.
	compactMinEntries = 10000
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

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
// (u32), a CRC-32C (u32) of the body and the JSON body, fsynced before the
// transition it records is acted on.
type stateLog struct {
	path    string
	f       *os.File
	w       *bufio.Writer
	entries int
}

// openLog opens (creating) the log in dir and returns the latest record of
// every live transactional id. A torn or corrupt tail (a crash during an
// append) is cut off.
func openLog(dir string) (*stateLog, map[string]record, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	l := &stateLog{path: filepath.Join(dir, logFile)}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, err
	}
	recs, good, n, err := replay(bufio.NewReader(f))
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", l.path, err)
	}
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("truncate torn tail of %s: %w", l.path, err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, err
	}
	l.f, l.w, l.entries = f, bufio.NewWriter(f), n
	return l, recs, nil
}

// replay decodes entries until the end or the first torn or corrupt one,
// returning the latest record per id, the byte length of the intact prefix
// and its entry count. A body that passes its CRC but is not a valid record
// is damage a torn write cannot explain, and an error.
func replay(r io.Reader) (map[string]record, int64, int, error) {
	recs := map[string]record{}
	var pos int64
	n := 0
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return recs, pos, n, nil // clean end or torn header
		}
		size := binary.BigEndian.Uint32(hdr[:4])
		if size > maxEntryBytes {
			return recs, pos, n, nil
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(r, body); err != nil {
			return recs, pos, n, nil
		}
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
			return recs, pos, n, nil
		}
		var rec record
		if err := json.Unmarshal(body, &rec); err != nil {
			return nil, 0, 0, fmt.Errorf("entry at byte %d: %w; the file is damaged beyond a torn tail: move it away to start without transaction state", pos, err)
		}
		if err := rec.valid(); err != nil {
			return nil, 0, 0, fmt.Errorf("entry at byte %d: %w; move the file away to start without transaction state", pos, err)
		}
		if rec.Deleted {
			delete(recs, rec.ID)
		} else {
			recs[rec.ID] = rec
		}
		n++
		pos += int64(8 + size)
	}
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
	body, _ := json.Marshal(rec) // plain data: cannot fail
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(body, castagnoli))
	return append(dst, body...)
}

// append writes rec and fsyncs. live is the number of ids after it, for
// deciding on compaction, and all returns them if compaction runs.
func (l *stateLog) append(rec record, live int, all func() []record) error {
	if _, err := l.w.Write(encodeEntry(nil, rec)); err != nil {
		return err
	}
	if err := l.w.Flush(); err != nil {
		return err
	}
	if err := l.f.Sync(); err != nil {
		return err
	}
	l.entries++
	if l.entries >= compactMinEntries && l.entries > 2*live {
		return l.compact(all())
	}
	return nil
}

// compact replaces the log with one entry per live id, atomically.
func (l *stateLog) compact(recs []record) error {
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	tmp := l.path + ".compact"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	var buf []byte
	for _, r := range recs {
		buf = encodeEntry(buf[:0], r)
		w.Write(buf)
	}
	if err := errors.Join(w.Flush(), f.Sync()); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, l.path); err != nil {
		f.Close()
		return err
	}
	if d, err := os.Open(filepath.Dir(l.path)); err == nil {
		d.Sync()
		d.Close()
	}
	l.f.Close()
	l.f, l.w, l.entries = f, bufio.NewWriter(f), len(recs)
	return nil
}

func (l *stateLog) close() error {
	return errors.Join(l.w.Flush(), l.f.Close())
}
