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
//
// The time it is given is the work a batch cost: its read and transforms
// plus its write, commit and acknowledgement, without the time it waited,
// read ahead, for the batch before it to commit. While the pipeline is
// behind, batches run back to back (the next one is read during the
// current one's commit) rather than one per interval, so the interval no
// longer spaces them; it still bounds each batch's work, which keeps a
// slow sink's batches short enough that a stop drains quickly and a retry
// recomputes little. The limit applies to the read after the next one when
// reads overlap commits: the loop asks for a read as soon as it takes a
// batch, before that batch commits.
type rateController struct {
	interval time.Duration
	limit    int // 0 = no limit beyond the configured caps
}

// observe records that a batch of n source records cost took of work.
// The next batch is sized to what would have filled the interval: an
// overrun shrinks it at once; a batch the limit cut that finished early
// grows it towards that size, at most doubling per batch, so one slow
// batch (a stall of the disk, a busy machine) costs a few short batches,
// not a long run of them.
func (r *rateController) observe(n int, took time.Duration) {
	if r.interval <= 0 || n == 0 || took <= 0 {
		return
	}
	fits := int(min(float64(n)*float64(r.interval)/float64(took), 1<<31))
	switch {
	case took > r.interval:
		r.limit = max(fits, minAdaptiveBatch)
	case r.limit > 0 && n >= r.limit:
		r.limit = min(fits, 2*r.limit)
		if r.limit > 1<<30 {
			r.limit = 0
		}
	}
}
