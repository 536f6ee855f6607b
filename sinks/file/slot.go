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

	"github.com/sluicehq/sluice/internal/durable"
)

// Slots make the common commit of a rolling sink, an epoch appended to the
// part file the previous epoch was appended to, cost one fsync of that file
// and one of its checkpoint. A checkpoint file costs two more steps: its
// rename makes a new directory entry, and only an fsync of the directory
// makes that durable. A slot is one of two files that exist from Open on
// and are overwritten in place, so fsyncing the slot alone makes the
// checkpoint durable.
//
// Epoch e writes slot e%2, so the other slot keeps epoch e-1 (when e-1 was
// a slot epoch) while slot e%2 is being overwritten: a crash that tears the
// write leaves a slot whose checksum fails, and e-1 is found intact. A
// torn slot is an epoch that did not commit; its writer never returned.
//
// A slot holds only epochs whose checkpoint names no new file: no part to
// rename, and either no open part or the same one as the previous
// checkpoint. An epoch that starts a staging file or rolls one writes a
// checkpoint file, whose directory fsync also makes the staging file's
// own name durable.

const (
	slotPref  = "slot-"
	slotCount = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (s *Sink) slotPath(epoch uint64) string {
	return filepath.Join(s.meta, slotPref+strconv.FormatUint(epoch%slotCount, 10))
}

// makeSlots creates the slot files that do not exist yet and makes their
// names durable, so a later slot write needs no directory fsync.
func (s *Sink) makeSlots() error {
	created := false
	for i := range uint64(slotCount) {
		f, err := os.OpenFile(s.slotPath(i), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("file sink: create checkpoint slot: %w", err)
		}
		f.Close()
		created = true
	}
	if created {
		if err := durable.SyncDir(s.meta); err != nil {
			return fmt.Errorf("file sink: %w", err)
		}
	}
	return nil
}

// encodeSlot frames c as one JSON line and a line with its CRC-32C, so a
// torn or stale write is told from a complete one.
func encodeSlot(c checkpoint) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("file sink: encode checkpoint: %w", err)
	}
	b = append(b, '\n')
	return fmt.Appendf(b, "%08x\n", crc32.Checksum(b[:len(b)-1], castagnoli)), nil
}

// decodeSlot returns the checkpoint in a slot's bytes; ok is false for an
// empty, torn or foreign slot.
func decodeSlot(b []byte, pipeline string) (c checkpoint, ok bool) {
	line, rest, found := bytes.Cut(b, []byte{'\n'})
	if !found || len(rest) < 9 || rest[8] != '\n' {
		return c, false
	}
	sum, err := strconv.ParseUint(string(rest[:8]), 16, 32)
	if err != nil || uint32(sum) != crc32.Checksum(line, castagnoli) {
		return c, false
	}
	if json.Unmarshal(line, &c) != nil || c.Pipeline != pipeline || c.Epoch == 0 {
		return checkpoint{}, false
	}
	return c, true
}

// writeSlot stores c in its slot: overwrite in place, cut off what a
// longer earlier write left, fsync.
func (s *Sink) writeSlot(c checkpoint) error {
	b, err := encodeSlot(c)
	if err != nil {
		return err
	}
	path := s.slotPath(c.Epoch)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("file sink: write checkpoint of epoch %d: %w", c.Epoch, err)
	}
	defer f.Close()
	if _, err = f.WriteAt(b, 0); err == nil {
		if err = s.hit("slot-written"); err != nil {
			return err // a simulated crash before the fsync
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
		return fmt.Errorf("file sink: write checkpoint of epoch %d to %s: %w", c.Epoch, path, err)
	}
	return nil
}

// newestSlot returns the valid slot with the highest epoch (zero if none).
func (s *Sink) newestSlot() (checkpoint, error) {
	var newest checkpoint
	for i := range uint64(slotCount) {
		path := s.slotPath(i)
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return checkpoint{}, fmt.Errorf("file sink: %w", err)
		}
		if c, ok := decodeSlot(b, s.pipeline); ok && c.Epoch > newest.Epoch {
			c.from = path
			newest = c
		}
	}
	return newest, nil
}

// useSlot reports whether c may be stored in a slot instead of a
// checkpoint file: it names no file the previous checkpoint did not.
func (s *Sink) useSlot(c checkpoint) bool {
	if c.Part != "" || c.Sealed != nil {
		return false
	}
	return c.Open == nil || (s.known.Open != nil && s.known.Open.File == c.Open.File)
}
