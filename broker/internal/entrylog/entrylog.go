// Package entrylog is the file format of the broker's small append-only
// state logs (committed offsets, transaction state). Each entry is a length
// (u32, big endian), a CRC-32C of the body (u32) and the body, JSON. A
// crash can tear only the tail, which Open cuts off; Rewrite replaces a log
// with a compacted one atomically.
package entrylog

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

	"github.com/sluicehq/sluice/internal/durable"
)

// MaxEntryBytes bounds one entry when reading a log back; a length beyond
// it means a torn or corrupt tail.
const MaxEntryBytes = 64 << 20

const headerBytes = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Append appends v, encoded as JSON, as one entry to dst.
func Append(dst []byte, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	return frame(dst, body), nil
}

// frame appends body with its length and CRC.
func frame(dst, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(body, castagnoli))
	return append(dst, body...)
}

// Replay calls each with the body of every intact entry of r, which holds
// size bytes, in order, until the end or the first torn or corrupt entry.
// It returns the length of the intact prefix and its entry count. An error
// from each (a body that passed its CRC but makes no sense: damage a torn
// write cannot explain) stops it and is returned.
func Replay(r io.Reader, size int64, each func(body []byte) error) (good int64, n int, err error) {
	var hdr [headerBytes]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return good, n, nil // clean end or torn header
		}
		bodyLen := binary.BigEndian.Uint32(hdr[:4])
		if bodyLen > MaxEntryBytes || good+headerBytes+int64(bodyLen) > size {
			// Checked before allocating, so a torn length field cannot
			// make us allocate its value.
			return good, n, nil
		}
		body := make([]byte, bodyLen)
		if _, err := io.ReadFull(r, body); err != nil {
			return good, n, nil
		}
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
			return good, n, nil
		}
		if err := each(body); err != nil {
			return 0, 0, fmt.Errorf("entry at byte %d: %w", good, err)
		}
		n++
		good += headerBytes + int64(bodyLen)
	}
}

// Open opens (creating) the log at path and replays it into each, cuts off
// a torn tail and returns the file positioned for appending, with the
// number of intact entries.
func Open(path string, each func(body []byte) error) (*os.File, int, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, 0, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, 0, err
	}
	fail := func(err error) (*os.File, int, error) {
		f.Close()
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	good, n, err := Replay(bufio.NewReader(f), fi.Size(), each)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", path, err))
	}
	if err := f.Truncate(good); err != nil {
		return fail(fmt.Errorf("truncate torn tail of %s: %w", path, err))
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		return fail(err)
	}
	return f, n, nil
}

// Rewrite replaces the log at path with the entries write adds, atomically
// and durably: a temporary file, fsynced, renamed over path, then the
// directory fsynced. It returns the new file, positioned for appending.
func Rewrite(path string, write func(add func(v any) error) error) (*os.File, error) {
	tmp := path + ".compact"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	w := bufio.NewWriter(f)
	var buf []byte
	add := func(v any) error {
		var err error
		if buf, err = Append(buf[:0], v); err != nil {
			return err
		}
		_, err = w.Write(buf)
		return err
	}
	if err := write(add); err != nil {
		return fail(err)
	}
	if err := errors.Join(w.Flush(), f.Sync()); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	durable.SyncDir(filepath.Dir(path)) // the new file is complete either way
	return f, nil
}
