package kafka

import "time"

// SetMetadataRefresh lets tests see new partitions at once.
func SetMetadataRefresh(d *Direct, every time.Duration) { d.refreshEvery = every }
