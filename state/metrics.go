package state

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/engine"
)

// Metrics are the state's Prometheus collectors, shared by every pipeline
// of a process and labelled by pipeline (and task).
type Metrics struct {
	Bytes           *prometheus.GaugeVec
	Keys            *prometheus.GaugeVec
	RestoreDuration *prometheus.HistogramVec
	RestoreRecords  *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered, as in tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Bytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_state_bytes", Help: "Size of the keys and values of each task's state this process holds.",
		}, []string{"pipeline", "task"}),
		Keys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_state_keys", Help: "Keys in each task's state this process holds.",
		}, []string{"pipeline", "task"}),
		RestoreDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_state_restore_duration_seconds", Help: "Time a restore of the pipeline's state took (catching up from the changelog, reverting what was not committed).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}, []string{"pipeline"}),
		RestoreRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_state_restore_records_total", Help: "Changelog records read while restoring state.",
		}, []string{"pipeline"}),
	}
	if reg != nil {
		reg.MustRegister(m.Bytes, m.Keys, m.RestoreDuration, m.RestoreRecords)
	}
	return m
}

func (m *Metrics) size(pipeline string, t engine.Task, s Size) {
	m.Bytes.WithLabelValues(pipeline, t.String()).Set(float64(s.Bytes))
	m.Keys.WithLabelValues(pipeline, t.String()).Set(float64(s.Keys))
}

// forget deletes the series of a task this process no longer holds.
func (m *Metrics) forget(pipeline string, t engine.Task) {
	m.Bytes.DeleteLabelValues(pipeline, t.String())
	m.Keys.DeleteLabelValues(pipeline, t.String())
}

func (m *Metrics) restored(pipeline string, took time.Duration, records int64) {
	m.RestoreDuration.WithLabelValues(pipeline).Observe(took.Seconds())
	m.RestoreRecords.WithLabelValues(pipeline).Add(float64(records))
}
