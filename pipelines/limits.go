package pipelines

import "time"

// Hard limits of the loader and of version 1 pipelines, in one place.
const (
	// MaxFileSize bounds a pipeline file. Real pipelines are a few KiB; the
	// cap keeps a mistaken path (a log, a data file) from being parsed.
	MaxFileSize = 1 << 20

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
