// Package backoff is the one exponential backoff Sluice's retry loops use
// (the batch retry in engine, plugin restarts, daemon pipeline restarts,
// the broker's accept loop): the wait after the first failure is Min, each
// further consecutive failure doubles it, and it never exceeds Max.
//
// There is no jitter: each loop retries one resource on behalf of one
// caller (a pipeline, a plugin process, a listener), so there is no herd of
// clients to spread out, and fixed waits keep logs and tests predictable.
package backoff

import "time"

// Policy bounds one retry loop's waits. Callers count consecutive failures
// themselves and reset the count on success.
type Policy struct {
	Min time.Duration // the wait after the first failure; ≤ 0 means no wait
	Max time.Duration // no wait is longer
}

// Delay is the wait after the nth consecutive failure: Min·2^(n-1), at most
// Max. n < 1 counts as the first failure.
func (p Policy) Delay(n int) time.Duration {
	if p.Min <= 0 {
		return 0
	}
	d := p.Min
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}
