package engine

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the engine's Prometheus collectors, shared by every pipeline
// of a process and labelled by pipeline.
type Metrics struct {
	RecordsIn       *prometheus.CounterVec
	RecordsOut      *prometheus.CounterVec
	RecordsRejected *prometheus.CounterVec
	BatchDuration   *prometheus.HistogramVec
	CommitDuration  *prometheus.HistogramVec
	CommittedEpoch  *prometheus.GaugeVec
	// TaskCommittedEpoch is each task's last committed epoch, for a
	// pipeline split into tasks: only the tasks this process runs have a
	// series (docs/ARCHITECTURE.md §8).
	TaskCommittedEpoch *prometheus.GaugeVec
	Retries            *prometheus.CounterVec
}

// NewMetrics creates the engine's collectors and registers them with reg
// (nil: not registered, as in tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		RecordsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_records_in_total", Help: "Records read from the source and committed.",
		}, []string{"pipeline"}),
		RecordsOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_records_out_total", Help: "Records committed to the sink.",
		}, []string{"pipeline"}),
		RecordsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_records_rejected_total", Help: "Records rejected by a transform.",
		}, []string{"pipeline", "plugin"}),
		BatchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_batch_duration_seconds", Help: "Time from reading a batch to its commit.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"pipeline"}),
		CommitDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_sink_commit_duration_seconds", Help: "Time the sink took to commit a batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"pipeline"}),
		CommittedEpoch: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_committed_epoch", Help: "The last epoch committed to the sink (a pipeline in one chain; split into tasks, see sluice_task_committed_epoch).",
		}, []string{"pipeline"}),
		TaskCommittedEpoch: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_task_committed_epoch",
			Help: "The last epoch committed to the sink for each task this process runs (pipelines split into tasks).",
		}, []string{"pipeline", "task"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_batch_retries_total", Help: "Batches retried after a transient failure.",
		}, []string{"pipeline"}),
	}
	if reg != nil {
		reg.MustRegister(m.RecordsIn, m.RecordsOut, m.RecordsRejected, m.BatchDuration,
			m.CommitDuration, m.CommittedEpoch, m.TaskCommittedEpoch, m.Retries)
	}
	return m
}
