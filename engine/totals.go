package engine

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Totals are a pipeline's counts as its Prometheus collectors hold them:
// since the process started, summed over every run of the pipeline in it.
// The status page and `sluice run`'s progress read them here rather than
// keeping a second set of counters.
type Totals struct {
	In, Out, Rejected uint64
	// Batches is how many batches (split into tasks: rounds) committed.
	Batches uint64
}

// Totals reads the pipeline's collectors (Rejected summed over its
// plugins).
func (m *Metrics) Totals(pipeline string) Totals {
	t := Totals{
		In:       uint64(sum(m.RecordsIn, pipeline, (*dto.Metric).GetCounter)),
		Out:      uint64(sum(m.RecordsOut, pipeline, (*dto.Metric).GetCounter)),
		Rejected: uint64(sum(m.RecordsRejected, pipeline, (*dto.Metric).GetCounter)),
	}
	t.Batches = uint64(sum(m.BatchDuration, pipeline, func(d *dto.Metric) *dto.Histogram { return d.GetHistogram() }))
	return t
}

// valued is a counter's or a histogram's sample: a value or a count.
type valued interface{ *dto.Counter | *dto.Histogram }

// sum adds up, over the series of c whose pipeline label is pipeline,
// each counter's value or histogram's sample count.
func sum[V valued](c prometheus.Collector, pipeline string, get func(*dto.Metric) V) float64 {
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	var total float64
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil || !hasLabel(&d, "pipeline", pipeline) {
			continue
		}
		switch v := any(get(&d)).(type) {
		case *dto.Counter:
			total += v.GetValue()
		case *dto.Histogram:
			total += float64(v.GetSampleCount())
		}
	}
	return total
}

func hasLabel(d *dto.Metric, name, value string) bool {
	for _, l := range d.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// Lag sums, over the partitions whose end the source knows, the records
// between the committed position (split into tasks: the task's) and the
// end. known is false while no end is known or a partition has no
// committed position yet.
func (s Status) Lag() (lag int64, known bool) {
	if len(s.Ends) == 0 {
		return 0, false
	}
	at := s.Positions
	for _, cp := range s.Tasks {
		at = at.Merge(cp.At)
	}
	for tp, end := range s.Ends {
		off, ok := at[tp]
		if !ok {
			return 0, false
		}
		lag += max(end-off, 0)
	}
	return lag, true
}

// Metrics returns the collectors the pipeline counts into.
func (p *Pipeline) Metrics() *Metrics { return p.m }

// Transforms returns the pipeline's transforms, in order (the status page
// lists the plugin processes of those that run any).
func (p *Pipeline) Transforms() []Transform { return p.cfg.Transforms }

// State returns the pipeline's state backend, nil if it keeps no state;
// the daemon's API asks it for its size.
func (p *Pipeline) State() StateBackend { return p.cfg.State }

// Meter turns successive Totals into records per second over its last
// few samples.
type Meter struct {
	window  int
	samples []meterSample
}

type meterSample struct {
	at time.Time
	Totals
}

// NewMeter returns a meter whose rates span the last window samples
// (at least 2).
func NewMeter(window int) *Meter { return &Meter{window: max(window, 2)} }

// Add records t, sampled at at.
func (m *Meter) Add(at time.Time, t Totals) {
	if len(m.samples) == m.window {
		m.samples = append(m.samples[:0], m.samples[1:]...)
	}
	m.samples = append(m.samples, meterSample{at, t})
}

// Rates returns records per second read and written between the oldest
// and the newest sample; 0 with fewer than two.
func (m *Meter) Rates() (in, out float64) {
	if len(m.samples) < 2 {
		return 0, 0
	}
	first, last := m.samples[0], m.samples[len(m.samples)-1]
	secs := last.at.Sub(first.at).Seconds()
	if secs <= 0 {
		return 0, 0
	}
	if last.In >= first.In { // counters only grow; guarded anyway
		in = float64(last.In-first.In) / secs
	}
	if last.Out >= first.Out {
		out = float64(last.Out-first.Out) / secs
	}
	return in, out
}
