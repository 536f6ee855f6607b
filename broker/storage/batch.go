package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors returned by Append and the readers. The protocol server maps them
// to Kafka error codes.
var (
	// ErrCorrupt means a batch failed validation (length, magic or CRC-32C);
	// nothing of the append was stored.
	ErrCorrupt = errors.New("corrupt record batch")
	// ErrTooLarge means one batch is larger than the partition allows.
	ErrTooLarge = errors.New("record batch too large")
	// ErrOffsetOutOfRange means an offset before the log start or past the end.
	ErrOffsetOutOfRange = errors.New("offset out of range")
	// ErrClosed means the partition was closed or deleted.
	ErrClosed = errors.New("partition closed")
)

// header is the fixed part of a magic v2 record batch.
type header struct {
	baseOffset      int64
	length          int32 // bytes after the length field
	magic           int8
	crc             uint32
	attributes      int16
	lastOffsetDelta int32
	baseTimestamp   int64
	maxTimestamp    int64
	producerID      int64 // -1 unless the producer is idempotent
	producerEpoch   int16
	baseSequence    int32
	recordCount     int32
}

func parseHeader(b []byte) header {
	return header{
		baseOffset:      int64(binary.BigEndian.Uint64(b[0:])),
		length:          int32(binary.BigEndian.Uint32(b[8:])),
		magic:           int8(b[16]),
		crc:             binary.BigEndian.Uint32(b[17:]),
		attributes:      int16(binary.BigEndian.Uint16(b[21:])),
		lastOffsetDelta: int32(binary.BigEndian.Uint32(b[23:])),
		baseTimestamp:   int64(binary.BigEndian.Uint64(b[27:])),
		maxTimestamp:    int64(binary.BigEndian.Uint64(b[35:])),
		producerID:      int64(binary.BigEndian.Uint64(b[43:])),
		producerEpoch:   int16(binary.BigEndian.Uint16(b[51:])),
		baseSequence:    int32(binary.BigEndian.Uint32(b[53:])),
		recordCount:     int32(binary.BigEndian.Uint32(b[57:])),
	}
}

func (h header) size() int64       { return batchLengthOverhead + int64(h.length) }
func (h header) nextOffset() int64 { return h.baseOffset + int64(h.lastOffsetDelta) + 1 }
func (h header) compressed() bool  { return h.attributes&0x7 != 0 }

// checkHeader validates the fixed fields of a batch with avail bytes
// available from its start.
func checkHeader(h header, avail int64) error {
	switch {
	case h.magic != 2:
		return fmt.Errorf("%w: magic %d; the broker stores only v2 batches (Kafka 0.11+ clients)", ErrCorrupt, h.magic)
	case h.length < batchHeaderLen-batchLengthOverhead || h.size() > avail:
		return fmt.Errorf("%w: batch length %d does not fit the %d bytes given", ErrCorrupt, h.length, avail)
	case h.lastOffsetDelta < 0 || h.recordCount <= 0 || h.recordCount-1 > h.lastOffsetDelta:
		return fmt.Errorf("%w: %d records with last offset delta %d", ErrCorrupt, h.recordCount, h.lastOffsetDelta)
	}
	return nil
}

// checkBatch validates the batch at the start of b (which may hold more) and
// returns its header. It checks everything a later reader relies on.
func checkBatch(b []byte, verifyCRC bool) (header, error) {
	if len(b) < batchHeaderLen {
		return header{}, fmt.Errorf("%w: %d bytes is shorter than a batch header", ErrCorrupt, len(b))
	}
	h := parseHeader(b)
	if err := checkHeader(h, int64(len(b))); err != nil {
		return h, err
	}
	if verifyCRC {
		if got := crc32.Checksum(b[21:h.size()], castagnoli); got != h.crc {
			return h, fmt.Errorf("%w: CRC-32C is %08x, header says %08x", ErrCorrupt, got, h.crc)
		}
	}
	return h, nil
}

// patchBatch sets the fields the broker owns; neither is covered by the CRC.
func patchBatch(b []byte, baseOffset int64) {
	binary.BigEndian.PutUint64(b[0:], uint64(baseOffset))
	binary.BigEndian.PutUint32(b[12:], 0) // partition leader epoch: one node, epoch 0
}
