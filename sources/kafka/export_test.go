package kafka

import "time"

// SetMetadataRefresh lets tests see new partitions at once.
func SetMetadataRefresh(d *Direct, every time.Duration) { d.refreshEvery = every }

// SetPatternRefresh sets how often a receiver refreshes metadata, so tests
// see new topics matching its pattern at once.
func SetPatternRefresh(r *Receiver, every time.Duration) { r.refreshEvery = every }

// SetStallTimeout sets how long a direct source waits for listed records
// before it looks into the partition.
func SetStallTimeout(d *Direct, after time.Duration) { d.stallAfter = after }
