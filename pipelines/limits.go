package pipelines

import "time"

// Hard limits of the loader and of version 1 pipelines, in one place.
const (
	// MaxFileSize bounds a pipeline file. Real pipelines are a few KiB; the
	// cap keeps a mistaken path (a log, a data file) from being parsed.
	MaxFileSize = 1 << 20

	// MaxExpandedSize bounds the file after ${VAR} expansion, with the same
	// 1 MiB: a file of references to one large variable would otherwise
	// multiply it (16,000 references to 32 KiB took 1.7 GB to lint).
	// Expansion stops as soon as its output passes the cap.
	MaxExpandedSize = MaxFileSize

	// MaxRecordsPerPartition bounds batch.max-records-per-partition. The
	// engine holds two batches (ARCHITECTURE §7), so this times the
	// partitions times about 128 bytes plus the records' bytes is memory
	// the pipeline may need; a million is 20 times the default.
	MaxRecordsPerPartition = 1_000_000

	// MaxBatchInterval bounds batch.interval: a pipeline idle longer than
	// a day between batches is a cron job.
	MaxBatchInterval = 24 * time.Hour

	// MinBlockInterval is the smallest receiver block-interval. Below it a
	// receiver spends more time fsyncing write-ahead log blocks than reading
	// (Spark recommends no less than 50ms for the same reason).
	MinBlockInterval = 50 * time.Millisecond

	// MaxNameLength bounds a pipeline name: it becomes a directory name, a
	// consumer group id and a metric label.
	MaxNameLength = 128

	// maxValues bounds how many YAML values one file may expand to through
	// aliases, so "billion laughs" anchors cannot exhaust memory or time.
	maxValues = 100_000

	// maxErrors bounds the lines one file reports: past a hundred, the
	// file is probably not a pipeline at all.
	maxErrors = 100

	// maxDepth bounds nesting inside free-form settings and merge keys; it
	// also stops aliases that refer to their own ancestors.
	maxDepth = 64
)
