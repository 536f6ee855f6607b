package daemon

import (
	"context"
	"time"

	"github.com/sluicehq/sluice/engine"
)

const (
	// sampleInterval is how often the record counters are sampled for
	// the rates the API and the status page show: each sample is a few
	// map reads per pipeline, and a second is as fine as a person reads.
	sampleInterval = time.Second
	// rateSamples is how many samples a rate spans (rateSamples-1
	// intervals, 5 s): long enough to smooth batches that commit every
	// few hundred milliseconds, short enough to show a stall within
	// seconds.
	rateSamples = 6
)

// sampleEvery samples every pipeline of a each interval until ctx ends.
func (a *api) sampleEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		a.sample(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *api) sample(now time.Time) {
	for _, m := range a.all() {
		if !m.valid() {
			continue
		}
		t := m.metrics.Totals(m.name)
		m.mu.Lock()
		if m.meter == nil {
			m.meter = engine.NewMeter(rateSamples)
		}
		m.meter.Add(now, t)
		m.mu.Unlock()
	}
}
