package storage

import "time"

// Limits and defaults of the partition log.
const (
	// DefaultSegmentBytes is Kafka's segment.bytes default (1 GiB). Segment
	// positions are stored as uint32 in the index, so it may not exceed 2 GiB.
	DefaultSegmentBytes = 1 << 30

	// MaxSegmentBytes keeps every position in a segment inside a uint32
	// index field with headroom for one maximal batch past the roll size.
	MaxSegmentBytes = 1<<31 - 1

	// DefaultIndexIntervalBytes is Kafka's index.interval.bytes: one sparse
	// index entry per 4 KiB of log, so a lookup scans at most that much.
	DefaultIndexIntervalBytes = 4096

	// batchHeaderLen is the fixed part of a magic v2 record batch.
	batchHeaderLen = 61

	// batchLengthOverhead is the part of the header not counted by the
	// batch's own length field (baseOffset and length).
	batchLengthOverhead = 12

	// maxBatchBytes caps one batch read during recovery and lookups, so a
	// corrupt length field cannot make us allocate gigabytes.
	maxBatchBytes = 64 << 20

	// maxInflation bounds what a compressed batch may decompress to when
	// an append validates its records: this many times the topic's
	// max.message.bytes (Kafka's default 1 MiB gives 32 MiB). Text and JSON
	// compress 3 to 10 times; a decompression bomb (a gigabyte of zeros in
	// a megabyte) is refused after this much output, and never stored for
	// consumers to inflate.
	maxInflation = 32

	// maxUncompressedBatchBytes caps maxInflation's bound for topics with a
	// large max.message.bytes; franz-go consumers refuse batches over 1 GiB.
	maxUncompressedBatchBytes = 256 << 20

	// maxInflatingBytes bounds what appends decompress at once, across
	// all partitions and connections: a few kilobytes of zstd can inflate
	// to the full limit, so without it a thousand connections each sending
	// a small bomb-like batch hold a thousand times 32 MiB while the request
	// budgets see kilobytes. 512 MiB lets sixteen batches of a default topic
	// (32 MiB each) or two of the largest decompress in parallel, more than
	// the cores to run them; further appends wait their turn.
	maxInflatingBytes = 2 * maxUncompressedBatchBytes

	// recoveryReadBytes is the read buffer used when scanning a segment.
	recoveryReadBytes = 1 << 20

	// DefaultDeleteRetention is Kafka's delete.retention.ms default: a
	// tombstone stays a day after it was cleaned, so a consumer that reads
	// the log at least daily sees every delete.
	DefaultDeleteRetention = 24 * time.Hour

	// DefaultMinCleanableRatio is Kafka's min.cleanable.dirty.ratio
	// default: a log is cleaned once half its bytes are not yet cleaned,
	// which bounds it to about twice its compacted size.
	DefaultMinCleanableRatio = 0.5
)
