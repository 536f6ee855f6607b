package engine

import "time"

// minAdaptiveBatch is the smallest batch the rate controller shrinks to, so
// a slow sink still makes progress.
const minAdaptiveBatch = 100

// rateController sizes the next batch from how long the last one took
// against the batch interval (backpressure, as Spark Streaming's
// PIDRateEstimator does in spirit, but proportional only): a batch that
// overran the interval shrinks the next one; one that finished well within
// it lets the limit grow back until it is lifted.
type rateController struct {
	interval time.Duration
	limit    int // 0 = no limit beyond the configured caps
}

// observe records that n records took took, from read to commit.
func (r *rateController) observe(n int, took time.Duration) {
	if r.interval <= 0 || n == 0 {
		return
	}
	switch {
	case took > r.interval:
		next := int(float64(n) * float64(r.interval) / float64(took))
		r.limit = max(next, minAdaptiveBatch)
	case r.limit > 0 && took < r.interval/2 && n >= r.limit:
		r.limit *= 2
		if r.limit > 1<<30 {
			r.limit = 0
		}
	}
}
