package file

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/durable"
	"github.com/sluicehq/sluice/internal/flock"
)

// Task slots make task mode roll as the single chain does (slot.go): each
// instance appends its rounds to its own open part file, and a round that
// does not roll stores its checkpoints by overwriting one of the
// instance's two slots in place, tasks/slot-<id>-<round%2>, and fsyncing
// it: two fsyncs per round, the open file's and the slot's. The slot files
// are made at OpenTasks (one directory fsync), so none is needed later;
// a round that starts a new open file fsyncs tasks/ once to make the
// file's name durable before a slot names it.
//
// A slot holds the instance's whole state, not only its round's: every
// task it committed with its newest checkpoint (rolling rounds' too), its
// open file with its committed length, and the name that file takes when
// sealed (the part name of the newest round appended to it, which commits
// once and so is nobody else's). Round r writes slot r%2, so the slot of
// r-1 stays intact while r's is written; a torn slot fails its checksum
// and is a round that did not commit.
//
// An instance holds the flock of its slot 0 while it lives and that of its
// open file while it appends to it. An open file missing from its place
// was rolled (renamed by a rolling round, whose record names it) or sealed
// (renamed to the slot's seal name): either way its committed bytes are
// visible. OpenTasks seals the open files of instances that let go of them
// (dead: the file's flock is free), after deleting the records of rounds
// that did not commit, and deletes the slots of dead instances every task
// of which has a newer checkpoint elsewhere.

const slotTaskPref = "slot-"

type taskSlot struct {
	Pipeline string                         `json:"pipeline"`
	Instance string                         `json:"instance"`
	Seq      uint64                         `json:"seq"`
	Tasks    map[engine.Task]taskCheckpoint `json:"tasks"`
	Open     *openPart                      `json:"open,omitempty"` // under tasks/
	Seal     string                         `json:"seal,omitempty"` // the part name of Open when sealed
	Time     time.Time                      `json:"committed_at"`
}

func taskSlotName(id string, i uint64) string {
	return slotTaskPref + id + "-" + strconv.FormatUint(i%slotCount, 10)
}

// parseTaskSlotName reads what taskSlotName wrote.
func parseTaskSlotName(name string) (string, bool) {
	n, ok := strings.CutPrefix(name, slotTaskPref)
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(n, '-')
	if i <= 0 || (n[i+1:] != "0" && n[i+1:] != "1") {
		return "", false
	}
	return n[:i], true
}

// makeTaskSlots creates this instance's slot files, locks slot 0 for its
// life and makes their names durable. The caller holds the commit lock.
func (s *Sink) makeTaskSlots() error {
	ts := s.tasks
	for i := range uint64(slotCount) {
		f, err := os.OpenFile(filepath.Join(ts.dir, taskSlotName(s.id, i)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("file sink: create task slot: %w", err)
		}
		ts.slotFiles[i] = f
	}
	if err := flock.Lock(ts.slotFiles[0]); err != nil {
		return fmt.Errorf("file sink: lock task slot: %w", err)
	}
	if err := durable.SyncDir(ts.dir); err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	return nil
}

func (ts *taskState) closeSlots() {
	for i, f := range ts.slotFiles {
		if f != nil {
			f.Close()
			ts.slotFiles[i] = nil
		}
	}
}

func encodeFramed(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("file sink: encode task slot: %w", err)
	}
	b = append(b, '\n')
	return fmt.Appendf(b, "%08x\n", crc32.Checksum(b[:len(b)-1], castagnoli)), nil
}

func decodeTaskSlot(b []byte, pipeline string) (sl taskSlot, ok bool) {
	line, rest, found := bytes.Cut(b, []byte{'\n'})
	if !found || len(rest) < 9 || rest[8] != '\n' {
		return sl, false
	}
	sum, err := strconv.ParseUint(string(rest[:8]), 16, 32)
	if err != nil || uint32(sum) != crc32.Checksum(line, castagnoli) {
		return sl, false
	}
	if json.Unmarshal(line, &sl) != nil || sl.Pipeline != pipeline || sl.Seq == 0 {
		return taskSlot{}, false
	}
	return sl, true
}

// readTaskSlot returns instance id's newest valid slot (Seq 0 if none).
func (s *Sink) readTaskSlot(id string) (taskSlot, error) {
	var newest taskSlot
	for i := range uint64(slotCount) {
		b, err := os.ReadFile(filepath.Join(s.tasks.dir, taskSlotName(id, i)))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return taskSlot{}, fmt.Errorf("file sink: %w", err)
		}
		if sl, ok := decodeTaskSlot(b, s.pipeline); ok && sl.Seq > newest.Seq {
			newest = sl
		}
	}
	return newest, nil
}

// writeTaskSlot stores sl in slot sl.Seq%2: overwrite in place, cut off
// what a longer earlier write left, fsync. It is the commit point of a
// round that does not roll.
func (s *Sink) writeTaskSlot(sl taskSlot) error {
	b, err := encodeFramed(sl)
	if err != nil {
		return err
	}
	f := s.tasks.slotFiles[sl.Seq%slotCount]
	if _, err = f.WriteAt(b, 0); err == nil {
		if herr := s.hit("tasks-slot-written"); herr != nil {
			return herr // a simulated crash before the fsync
		}
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil && fi.Size() > int64(len(b)) {
			err = f.Truncate(int64(len(b)))
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		// It may or may not have landed.
		return s.breakTasks(fmt.Errorf("%w: file sink: write task slot %s: %w", engine.ErrNotCommitted, f.Name(), err))
	}
	return nil
}

// sealDead makes the committed bytes of a dead instance's open file
// visible: it cuts the file to the slot's committed length (what follows
// belongs to no round), fsyncs it and renames it to the slot's seal name.
// A file still locked belongs to a live instance and is left. The caller
// holds the commit lock and has deleted, durably, the records of rounds
// that did not commit.
func (s *Sink) sealDead(sl taskSlot) error {
	if sl.Open == nil {
		return nil
	}
	src := filepath.Join(s.tasks.dir, sl.Open.File)
	f, err := os.OpenFile(src, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil // rolled or sealed
	}
	if err != nil {
		return fmt.Errorf("file sink: seal %s: %w", src, err)
	}
	defer f.Close()
	if ok, _ := flock.TryLock(f); !ok {
		return nil
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() < sl.Open.Bytes {
		err = fmt.Errorf("it holds %d bytes, the slot of instance %s says %d; restore it", fi.Size(), sl.Instance, sl.Open.Bytes)
	}
	if err == nil {
		err = f.Truncate(sl.Open.Bytes)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = s.hit("tasks-seal-dead-synced")
	}
	if err == nil {
		err = os.Rename(src, filepath.Join(s.dir, sl.Seal))
	}
	if err == nil {
		err = durable.SyncDir(s.dir)
	}
	if err != nil {
		return fmt.Errorf("file sink: seal the open part file %s of a stopped instance as %s: %w", sl.Open.File, sl.Seal, err)
	}
	s.log.Info("rolled the open part file of a stopped instance", "part", sl.Seal, "bytes", sl.Open.Bytes)
	return nil
}

// pruneTaskSlots deletes the slot files of dead instances whose open file
// is gone and every task of which has a newer checkpoint elsewhere. A
// deletion a crash undoes is pruned again. The caller holds the commit
// lock.
func (s *Sink) pruneTaskSlots() {
	ts := s.tasks
	for id, sl := range ts.slots {
		if id == s.id {
			continue
		}
		obsolete := true
		for t, c := range sl.Tasks {
			if ts.heads[t].Epoch <= c.Epoch {
				obsolete = false
				break
			}
		}
		if !obsolete {
			continue
		}
		if sl.Open != nil {
			if _, err := os.Lstat(filepath.Join(ts.dir, sl.Open.File)); err == nil {
				continue
			}
		}
		f, err := os.OpenFile(filepath.Join(ts.dir, taskSlotName(id, 0)), os.O_RDWR, 0)
		if err == nil {
			ok, _ := flock.TryLock(f)
			if ok {
				for i := range uint64(slotCount) {
					os.Remove(filepath.Join(ts.dir, taskSlotName(id, i)))
				}
				delete(ts.slots, id)
			}
			f.Close()
		}
	}
}

// sealTasks is seal for a pipeline split into tasks: it renames this
// instance's open file, cut to its committed length, to the name its slot
// gives it. No other instance seals a file this one holds locked, so
// there is nothing to check or store first: the file missing from
// tasks/ is the mark that it was sealed.
func (s *Sink) sealTasks() error {
	ts := s.tasks
	if s.out == nil || s.out.committed == 0 || ts.broken != nil || ts.seal == "" {
		return nil
	}
	if err := flock.Lock(s.lock); err != nil {
		return fmt.Errorf("file sink: lock %s: %w", s.lock.Name(), err)
	}
	defer flock.Unlock(s.lock)
	if err := s.out.sync(); err != nil {
		return fmt.Errorf("file sink: roll the open part file: %w", err)
	}
	if err := s.hit("tasks-seal-synced"); err != nil {
		return err
	}
	if err := os.Rename(s.out.path(), filepath.Join(s.dir, ts.seal)); err != nil {
		return fmt.Errorf("file sink: roll the open part file: %w; the next OpenTasks does", err)
	}
	s.out.close()
	s.out = nil
	if err := s.hit("tasks-seal-renamed"); err != nil {
		return err
	}
	if err := durable.SyncDir(s.dir); err != nil {
		return fmt.Errorf("file sink: roll the open part file: %w", err)
	}
	return nil
}

// breakTasks stops this instance from committing after a failure that
// leaves its open file in a state only recovery can settle: its files are
// let go (their locks freed), and the next OpenTasks seals the open file
// by its slot.
func (s *Sink) breakTasks(cause error) error {
	ts := s.tasks
	ts.broken = cause
	if s.out != nil {
		s.out.close()
		s.out = nil
	}
	ts.closeSlots()
	s.log.Warn("the open part file cannot be carried on; the tasks must be opened again", "err", cause)
	return cause
}

// anySlot reports whether some instance's slot holds a committed round.
func (ts *taskState) anySlot() bool {
	for _, sl := range ts.slots {
		if sl.Seq > 0 {
			return true
		}
	}
	return false
}
