package engine

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Totals are a pipeline's record counts as its Prometheus counters hold
// them: since the process started, summed over every run of the pipeline
// in it. The status page and `sluice run`'s progress read them here rather
// than keeping a second set of counters.
type Totals struct {
	In, Out, Rejected uint64
}

// Totals reads the pipeline's counters (Rejected summed over its plugins).
func (m *Metrics) Totals(pipeline string) Totals {
	return Totals{
		In:       counterSum(m.RecordsIn, pipeline),
		Out:      counterSum(m.RecordsOut, pipeline),
		Rejected: counterSum(m.RecordsRejected, pipeline),
	}
}

// counterSum adds up the series of c whose pipeline label is pipeline.
func counterSum(c *prometheus.CounterVec, pipeline string) uint64 {
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	var sum float64
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil {
			continue
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "pipeline" && l.GetValue() == pipeline {
				sum += d.GetCounter().GetValue()
			}
		}
	}
	return uint64(sum)
}

// Metrics returns the collectors the pipeline counts into.
func (p *Pipeline) Metrics() *Metrics { return p.m }

// Transforms returns the pipeline's transforms, in order (the status page
// lists the plugin processes of those that run any).
func (p *Pipeline) Transforms() []Transform { return p.cfg.Transforms }
