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

// sample is a pipeline's record counters at one moment.
type sample struct {
	at time.Time
	engine.Totals
}

// meter keeps a pipeline's latest samples, oldest first. Guarded by the
// managed's mu.
type meter struct {
	samples []sample
}

func (r *meter) add(s sample) {
	if len(r.samples) == rateSamples {
		r.samples = append(r.samples[:0], r.samples[1:]...)
	}
	r.samples = append(r.samples, s)
}

// rates returns records per second in and out between the oldest and the
// newest sample; 0 with fewer than two. A counter that went back (it
// never does; guarded anyway) counts as 0.
func (r *meter) rates() (in, out float64) {
	if len(r.samples) < 2 {
		return 0, 0
	}
	first, last := r.samples[0], r.samples[len(r.samples)-1]
	secs := last.at.Sub(first.at).Seconds()
	if secs <= 0 {
		return 0, 0
	}
	if last.In >= first.In {
		in = float64(last.In-first.In) / secs
	}
	if last.Out >= first.Out {
		out = float64(last.Out-first.Out) / secs
	}
	return in, out
}

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
		s := sample{at: now, Totals: m.metrics.Totals(m.name)}
		m.mu.Lock()
		m.meter.add(s)
		m.mu.Unlock()
	}
}
