package kafka

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/engine"
)

// Metrics are the Kafka sources' collectors, shared by every pipeline of a
// process. A nil *Metrics records nothing.
type Metrics struct {
	Lag     *prometheus.GaugeVec
	Lost    *prometheus.CounterVec
	Corrupt *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_consumer_lag_records",
			Help: "Records between the pipeline's committed position and the partition's end.",
		}, []string{"pipeline", "topic", "partition"}),
		Lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_records_lost_total",
			Help: "Records deleted by retention before the pipeline read them (on-data-loss: skip).",
		}, []string{"pipeline", "topic", "partition"}),
		Corrupt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_records_corrupt_total",
			Help: "Offsets of record batches that could not be decoded and were skipped (on-corrupt: skip).",
		}, []string{"pipeline", "topic", "partition"}),
	}
	if reg != nil {
		reg.MustRegister(m.Lag, m.Lost, m.Corrupt)
	}
	return m
}

func (m *Metrics) lag(pipeline string, tp engine.TopicPartition, n int64) {
	if m != nil {
		m.Lag.WithLabelValues(pipeline, tp.Topic, strconv.Itoa(int(tp.Partition))).Set(float64(max(n, 0)))
	}
}

// forget deletes tp's lag series: the pipeline reads it no more here.
func (m *Metrics) forget(pipeline string, tp engine.TopicPartition) {
	if m != nil {
		m.Lag.DeleteLabelValues(pipeline, tp.Topic, strconv.Itoa(int(tp.Partition)))
	}
}

func (m *Metrics) lost(pipeline string, tp engine.TopicPartition, n int64) {
	if m != nil {
		m.Lost.WithLabelValues(pipeline, tp.Topic, strconv.Itoa(int(tp.Partition))).Add(float64(n))
	}
}

func (m *Metrics) corrupt(pipeline string, tp engine.TopicPartition, n int64) {
	if m != nil {
		m.Corrupt.WithLabelValues(pipeline, tp.Topic, strconv.Itoa(int(tp.Partition))).Add(float64(n))
	}
}
