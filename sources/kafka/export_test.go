package kafka

import "time"

// SetMetadataRefresh lets tests see new partitions at once.
func SetMetadataRefresh(d *Direct, every time.Duration) { d.refreshEvery = every }

// SetPatternRefresh lets tests see new topics matching a receiver's pattern at once.
func SetPatternRefresh(r *Receiver, every time.Duration) { r.refreshEvery = every }
