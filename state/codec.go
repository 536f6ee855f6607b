package state

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The changelog's record format (docs/ARCHITECTURE.md, "State"). A record's
// Kafka key is the state key with its namespace (storeKey), its partition
// the task. Its value is one of:
//
//   - null: a tombstone, written only once the epoch that deleted the key is
//     committed, so compaction may drop the key;
//   - version (1 byte), epoch (uvarint), flags (1 byte: flagDeleted,
//     flagPrev), the new value unless deleted (uvarint length + bytes), the
//     previous value if flagPrev (uvarint length + bytes).
//
// The previous value is the key's value at epoch-1, so a restore can put
// back a key whose latest record is from an epoch the sink never committed,
// even after compaction dropped the older records.

const (
	recordVersion = 1

	flagDeleted = 1 << 0 // the epoch deleted the key; no new value follows
	flagPrev    = 1 << 1 // the key had a value at epoch-1, which follows
	knownFlags  = flagDeleted | flagPrev
)

// storeKey is a state key as the local store and the changelog key it:
// the namespace's length (uvarint), the namespace, the key. Keys of one
// namespace share the prefix and sort by key within it.
func storeKey(dst []byte, ns string, key []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ns)))
	dst = append(dst, ns...)
	return append(dst, key...)
}

// nsPrefix is the prefix every key of ns has in the store.
func nsPrefix(ns string) []byte { return storeKey(nil, ns, nil) }

// splitKey is storeKey's inverse. The returned slices alias k.
func splitKey(k []byte) (ns string, key []byte, err error) {
	n, w := binary.Uvarint(k)
	if w <= 0 || n > uint64(len(k)-w) {
		return "", nil, errors.New("state: malformed key: bad namespace length")
	}
	return string(k[w : w+int(n)]), k[w+int(n):], nil
}

// logChange is one key's change in an epoch, as the changelog carries it.
type logChange struct {
	epoch   uint64
	deleted bool
	value   []byte // the new value, when not deleted
	hasPrev bool
	prev    []byte // the value at epoch-1, when hasPrev
}

// changeOverhead bounds what encodeChange adds to the two values: the
// version and flags bytes and three uvarints.
const changeOverhead = 2 + 3*binary.MaxVarintLen64

func encodeChange(dst []byte, c logChange) []byte {
	flags := byte(0)
	if c.deleted {
		flags |= flagDeleted
	}
	if c.hasPrev {
		flags |= flagPrev
	}
	dst = append(dst, recordVersion)
	dst = binary.AppendUvarint(dst, c.epoch)
	dst = append(dst, flags)
	if !c.deleted {
		dst = binary.AppendUvarint(dst, uint64(len(c.value)))
		dst = append(dst, c.value...)
	}
	if c.hasPrev {
		dst = binary.AppendUvarint(dst, uint64(len(c.prev)))
		dst = append(dst, c.prev...)
	}
	return dst
}

// decodeChange reads a non-null changelog value. The returned slices alias
// b. Anything it does not recognise is an error: a changelog written by a
// newer Sluice, or not a changelog at all.
func decodeChange(b []byte) (logChange, error) {
	var c logChange
	if len(b) < 1 {
		return c, errors.New("state: empty changelog value")
	}
	if b[0] != recordVersion {
		return c, fmt.Errorf("state: changelog record version %d; this Sluice reads version %d", b[0], recordVersion)
	}
	b = b[1:]
	epoch, w := binary.Uvarint(b)
	if w <= 0 {
		return c, errors.New("state: malformed changelog record: bad epoch")
	}
	c.epoch, b = epoch, b[w:]
	if len(b) < 1 {
		return c, errors.New("state: malformed changelog record: no flags")
	}
	flags := b[0]
	b = b[1:]
	if flags&^knownFlags != 0 {
		return c, fmt.Errorf("state: changelog record has unknown flags %#x", flags)
	}
	c.deleted, c.hasPrev = flags&flagDeleted != 0, flags&flagPrev != 0
	var err error
	if !c.deleted {
		if c.value, b, err = lengthPrefixed(b); err != nil {
			return c, err
		}
	}
	if c.hasPrev {
		if c.prev, b, err = lengthPrefixed(b); err != nil {
			return c, err
		}
	}
	if len(b) != 0 {
		return c, fmt.Errorf("state: malformed changelog record: %d bytes left over", len(b))
	}
	return c, nil
}

func lengthPrefixed(b []byte) (field, rest []byte, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, errors.New("state: malformed changelog record: bad length")
	}
	end := w + int(n)
	return b[w:end:end], b[end:], nil
}
