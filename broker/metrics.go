package broker

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/storage"
	"github.com/sluicehq/sluice/broker/txn"
)

// Metrics are the broker's Prometheus collectors. Create them with
// NewMetrics, pass them in Options.Metrics and register them (Collectors)
// where /metrics is served; without Options.Metrics the broker keeps its
// own, reachable through (*Broker).Metrics.
type Metrics struct {
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	producedB   *prometheus.CounterVec
	connections prometheus.Gauge
	logEnd      *partitionGauge
	producerIDs prometheus.Counter
	duplicates  *prometheus.CounterVec
	producers   *partitionGauge
	groups      *groupsCollector
	rebalances  *prometheus.CounterVec
	txnStates   *txnCollector
	txnEnded    *prometheus.CounterVec
	openTxns    *partitionGauge
	unstable    *partitionGauge
	corrupt     *partitionGauge
	offline     *partitionGauge
	cleaner     *cleanerCollector
	// authentications counts logins by mechanism (PLAIN, SCRAM-SHA-256,
	// SCRAM-SHA-512, TLS for refused handshakes, other) and result.
	authentications *prometheus.CounterVec

	// connectionsRefused counts connections closed at accept because a
	// connection limit was reached.
	connectionsRefused prometheus.Counter
	// requestBytes is the request bytes in flight (read, response not yet
	// written): at --max-request-bytes, connections wait to be read.
	requestBytes prometheus.Gauge
	// throttles are the quota throttles applied, by quota type.
	throttles *prometheus.HistogramVec
	// sensors is the number of quota sensors kept.
	sensors *sensorGauge
}

// NewMetrics creates the broker's collectors, unregistered.
func NewMetrics() *Metrics {
	return &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_broker_requests_total",
			Help: "Kafka requests answered, by API and the first error code of the response (NONE when all succeeded).",
		}, []string{"api", "error"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_broker_request_duration_seconds",
			Help:    "Time from reading a request to its response being ready to send, by API (fetch long-polls and acks=all fsyncs included).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"api"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_broker_received_bytes_total",
			Help: "Bytes of Kafka requests received, framing included.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_broker_sent_bytes_total",
			Help: "Bytes of Kafka responses sent, framing included.",
		}),
		producedB: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_broker_produced_bytes_total",
			Help: "Bytes of record batches appended to partition logs, by topic.",
		}, []string{"topic"}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_broker_connections",
			Help: "Open client connections.",
		}),
		requestBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_broker_request_bytes_in_flight",
			Help: "Bytes of requests read whose responses are not written yet; at --max-request-bytes, connections are not read until responses go out.",
		}),
		throttles: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_broker_quota_throttle_seconds",
			Help:    "Throttle times given to clients over a client quota (the response carries it and the connection is not read for it), by quota type (produce: producer_byte_rate, fetch: consumer_byte_rate; connection: connection_creation_rate, the connection held unserved, then closed; request: request_percentage).",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 8),
		}, []string{"quota"}),
		sensors: &sensorGauge{desc: prometheus.NewDesc("sluice_broker_quota_sensors",
			"Clients (user and client id pairs, per quota) measured against a client quota; at most quota.MaxSensors.", nil, nil)},
		connectionsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_broker_connections_refused_total",
			Help: "Connections closed at accept because --max-connections or --max-connections-per-ip was reached.",
		}),
		logEnd: &partitionGauge{desc: prometheus.NewDesc("sluice_broker_log_end_offset",
			"Log end offset (the next offset to be written) per partition.", []string{"topic", "partition"}, nil),
			value: func(p *storage.Partition) (float64, bool) { return float64(p.EndOffset()), true }},
		producerIDs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_broker_producer_ids_allocated_total",
			Help: "Producer ids handed out by InitProducerId.",
		}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_broker_duplicate_batches_total",
			Help: "Idempotent producers' retried batches recognised as already written and not stored again, by topic.",
		}, []string{"topic"}),
		// Partitions with no idempotent producer are left out, to keep the
		// series few.
		producers: &partitionGauge{desc: prometheus.NewDesc("sluice_broker_idempotent_producers",
			"Idempotent producer ids whose sequence state a partition tracks.", []string{"topic", "partition"}, nil),
			value: func(p *storage.Partition) (float64, bool) { n := p.Producers(); return float64(n), n > 0 }},
		groups: &groupsCollector{
			states: prometheus.NewDesc("sluice_broker_groups",
				"Consumer groups by state.", []string{"state"}, nil),
			lag: prometheus.NewDesc("sluice_broker_group_lag_records",
				"Records between a group's committed offset and the partition's end.", []string{"group", "topic", "partition"}, nil),
		},
		rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_broker_group_rebalances_total",
			Help: "Join phases completed (each bumps the group's generation), by group.",
		}, []string{"group"}),
		txnStates: &txnCollector{desc: prometheus.NewDesc("sluice_broker_transactions",
			"Transactional ids by the state of their transaction (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort).", []string{"state"}, nil)},
		txnEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_broker_transactions_total",
			Help: "Transactions completed (markers written), by result: commit, abort (by the producer or a newer instance), timeout (aborted by the broker).",
		}, []string{"result"}),
		// Only partitions with an open transaction, to keep the series few.
		openTxns: &partitionGauge{desc: prometheus.NewDesc("sluice_broker_open_transactions",
			"Transactions open on a partition; the oldest holds its last stable offset back.", []string{"topic", "partition"}, nil),
			value: func(p *storage.Partition) (float64, bool) { n := p.OpenTxns(); return float64(n), n > 0 }},
		authentications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_broker_authentications_total",
			Help: "Client logins, by mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; TLS for a refused TLS handshake, such as a missing or untrusted client certificate) and result (ok, failed).",
		}, []string{"mechanism", "result"}),
		unstable: &partitionGauge{desc: prometheus.NewDesc("sluice_broker_unstable_records",
			"Records between a partition's last stable offset and its end, held back from read_committed consumers by open transactions.", []string{"topic", "partition"}, nil),
			value: func(p *storage.Partition) (float64, bool) {
				n := p.EndOffset() - p.LastStableOffset()
				return float64(n), n > 0
			}},
		// Only partitions where reads met one (ARCHITECTURE §9).
		corrupt: &partitionGauge{typ: prometheus.CounterValue, desc: prometheus.NewDesc("sluice_broker_corrupt_batches_total",
			"Distinct record batches found corrupt on disk by reads since the broker started; fetches stop before them and answer CORRUPT_MESSAGE.", []string{"topic", "partition"}, nil),
			value: func(p *storage.Partition) (float64, bool) { n := p.CorruptBatches(); return float64(n), n > 0 }},
		cleaner: newCleanerCollector(),
		offline: &partitionGauge{desc: prometheus.NewDesc("sluice_broker_offline_partitions",
			"1 for a partition taken offline at start because a sealed segment of its log is damaged (the log says which and what to do).", []string{"topic", "partition"}, nil),
			value: func(p *storage.Partition) (float64, bool) { return 1, p.Offline() != nil }},
	}
}

// Collectors returns every collector, to register with a registry.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.latency, m.bytesIn, m.bytesOut, m.producedB, m.connections, m.connectionsRefused, m.requestBytes, m.logEnd,
		m.producerIDs, m.duplicates, m.producers, m.groups, m.rebalances, m.txnStates, m.txnEnded, m.openTxns, m.unstable,
		m.corrupt, m.offline, m.authentications, m.throttles, m.sensors, m.cleaner}
}

// Metrics returns the broker's collectors.
func (b *Broker) Metrics() *Metrics { return b.metrics }

func (m *Metrics) attach(b *Broker) {
	m.logEnd.set(b)
	m.producers.set(b)
	m.groups.set(b)
	m.txnStates.set(b)
	m.openTxns.set(b)
	m.unstable.set(b)
	m.corrupt.set(b)
	m.offline.set(b)
	m.sensors.set(b)
	m.cleaner.set(b)
	b.groups.OnRebalance = func(g string) { m.rebalances.WithLabelValues(g).Inc() }
	b.txns.OnEnd = func(r txn.Result) { m.txnEnded.WithLabelValues(string(r)).Inc() }
}

// cleanerCollector reads the log cleaner's totals and the compacted
// partitions' state when scraped (ARCHITECTURE §9, "Compaction").
type cleanerCollector struct {
	brokerRef
	runs, failures, read, written, removed, last, ratio, uncleanable *prometheus.Desc
}

func newCleanerCollector() *cleanerCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &cleanerCollector{
		runs:        d("sluice_broker_log_cleaner_runs_total", "Cleans of compacted partition logs that rewrote segments."),
		failures:    d("sluice_broker_log_cleaner_failures_total", "Cleans that failed; the partition is then left uncleanable until a restart (the log says why)."),
		read:        d("sluice_broker_log_cleaner_read_bytes_total", "Bytes of segments the log cleaner read."),
		written:     d("sluice_broker_log_cleaner_written_bytes_total", "Bytes of cleaned segments the log cleaner wrote."),
		removed:     d("sluice_broker_log_cleaner_removed_records_total", "Records the log cleaner removed: superseded by a later record of their key, expired tombstones and markers, aborted transactions' data, keyless records."),
		last:        d("sluice_broker_log_cleaner_last_run_seconds", "How long the last clean that rewrote segments took."),
		ratio:       d("sluice_broker_log_cleaner_max_dirty_ratio", "The largest share of not yet cleaned bytes among compacted partitions (a clean is due at the topic's min.cleanable.dirty.ratio)."),
		uncleanable: d("sluice_broker_log_cleaner_uncleanable_partitions", "Compacted partitions the cleaner gave up on after a failed clean."),
	}
}

func (c *cleanerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.runs, c.failures, c.read, c.written, c.removed, c.last, c.ratio, c.uncleanable} {
		ch <- d
	}
}

func (c *cleanerCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.get()
	if b == nil {
		return
	}
	st := b.cleaner.Stats()
	ch <- prometheus.MustNewConstMetric(c.runs, prometheus.CounterValue, float64(st.Runs))
	ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(st.Failures))
	ch <- prometheus.MustNewConstMetric(c.read, prometheus.CounterValue, float64(st.BytesRead))
	ch <- prometheus.MustNewConstMetric(c.written, prometheus.CounterValue, float64(st.BytesWritten))
	ch <- prometheus.MustNewConstMetric(c.removed, prometheus.CounterValue, float64(st.RecordsRemoved))
	ch <- prometheus.MustNewConstMetric(c.last, prometheus.GaugeValue, st.LastDuration.Seconds())
	maxRatio, uncleanable := 0.0, 0
	now := time.Now()
	for _, t := range b.topics.cleanTargets() {
		if !t.P.Compacted() {
			continue
		}
		cs := t.P.CleanState(now)
		maxRatio = max(maxRatio, cs.Ratio)
		if cs.Uncleanable != nil {
			uncleanable++
		}
	}
	ch <- prometheus.MustNewConstMetric(c.ratio, prometheus.GaugeValue, maxRatio)
	ch <- prometheus.MustNewConstMetric(c.uncleanable, prometheus.GaugeValue, float64(uncleanable))
}

// txnCollector counts transactional ids by state when scraped; every
// state is reported, zeros included, so a dashboard sees Ongoing drop to 0.
type txnCollector struct {
	brokerRef
	desc *prometheus.Desc
}

func (c *txnCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *txnCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.get()
	if b == nil {
		return
	}
	counts := b.txns.Counts()
	for _, s := range txn.States {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}

// groupsCollector counts groups by state and computes each group's
// committed-offset lag when scraped.
type groupsCollector struct {
	brokerRef
	states, lag *prometheus.Desc
}

func (c *groupsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.states
	ch <- c.lag
}

func (c *groupsCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.get()
	if b == nil {
		return
	}
	counts := map[string]int{}
	for _, g := range b.groups.List() {
		counts[string(g.State)]++
		for _, o := range b.groups.Fetch(g.Group, nil) {
			t := b.topics.get(o.Topic)
			if t == nil || int(o.Partition) >= len(t.parts) || o.Offset < 0 {
				continue
			}
			lag := max(t.parts[o.Partition].EndOffset()-o.Offset, 0)
			ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(lag),
				g.Group, o.Topic, strconv.Itoa(int(o.Partition)))
		}
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.states, prometheus.GaugeValue, float64(n), state)
	}
}

func (m *Metrics) request(key int16, code int16, took time.Duration) {
	m.latency.WithLabelValues(kmsg.NameForKey(key)).Observe(took.Seconds())
	name := "NONE"
	if code != 0 {
		if e := kerr.TypedErrorForCode(code); e != nil {
			name = e.Message
		} else {
			name = strconv.Itoa(int(code))
		}
	}
	m.requests.WithLabelValues(kmsg.NameForKey(key), name).Inc()
}

// Quota types, as the throttle metric labels them.
const (
	quotaProduce    = "produce"
	quotaFetch      = "fetch"
	quotaConnection = "connection"
	quotaRequest    = "request"
)

func (m *Metrics) throttled(quotaType string, d time.Duration) {
	m.throttles.WithLabelValues(quotaType).Observe(d.Seconds())
}

// sensorGauge reports the quota sensors kept, read when scraped.
type sensorGauge struct {
	brokerRef
	desc *prometheus.Desc
}

func (g *sensorGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *sensorGauge) Collect(ch chan<- prometheus.Metric) {
	if b := g.get(); b != nil {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(b.sensors.Len()))
	}
}

func (m *Metrics) produced(topic string, n int) {
	m.producedB.WithLabelValues(topic).Add(float64(n))
}

// brokerRef is the broker a scrape-time collector reads; it is set once
// the broker is open (collectors exist before it).
type brokerRef struct {
	mu sync.Mutex
	b  *Broker
}

func (r *brokerRef) set(b *Broker) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.b = b
}

func (r *brokerRef) get() *Broker {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.b
}

// partitionGauge reports a per-partition value read when scraped, rather
// than a gauge kept up to date on every append; value's second result says
// whether to report the partition at all.
type partitionGauge struct {
	brokerRef
	desc  *prometheus.Desc
	value func(*storage.Partition) (float64, bool)
	typ   prometheus.ValueType // GaugeValue if zero
}

func (c *partitionGauge) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *partitionGauge) Collect(ch chan<- prometheus.Metric) {
	b := c.get()
	if b == nil {
		return
	}
	for _, t := range b.topics.list() {
		for i, p := range t.parts {
			if v, ok := c.value(p); ok {
				typ := c.typ
				if typ == 0 {
					typ = prometheus.GaugeValue
				}
				ch <- prometheus.MustNewConstMetric(c.desc, typ, v, t.meta.Name, strconv.Itoa(i))
			}
		}
	}
}

// errorCode is the first non-zero error code in a response, for metrics.
func errorCode(resp kmsg.Response) int16 {
	switch r := resp.(type) {
	case *kmsg.ProduceResponse:
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					return p.ErrorCode
				}
			}
		}
	case *kmsg.FetchResponse:
		if r.ErrorCode != 0 {
			return r.ErrorCode
		}
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					return p.ErrorCode
				}
			}
		}
	case *kmsg.ListOffsetsResponse:
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					return p.ErrorCode
				}
			}
		}
	case *kmsg.MetadataResponse:
		for _, t := range r.Topics {
			if t.ErrorCode != 0 {
				return t.ErrorCode
			}
		}
	case *kmsg.ApiVersionsResponse:
		return r.ErrorCode
	case *kmsg.InitProducerIDResponse:
		return r.ErrorCode
	case *kmsg.EndTxnResponse:
		return r.ErrorCode
	case *kmsg.AddOffsetsToTxnResponse:
		return r.ErrorCode
	case *kmsg.AddPartitionsToTxnResponse:
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					return p.ErrorCode
				}
			}
		}
	case *kmsg.TxnOffsetCommitResponse:
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					return p.ErrorCode
				}
			}
		}
	case *kmsg.CreateTopicsResponse:
		for _, t := range r.Topics {
			if t.ErrorCode != 0 {
				return t.ErrorCode
			}
		}
	case *kmsg.DeleteTopicsResponse:
		for _, t := range r.Topics {
			if t.ErrorCode != 0 {
				return t.ErrorCode
			}
		}
	case *kmsg.DescribeConfigsResponse:
		for _, t := range r.Resources {
			if t.ErrorCode != 0 {
				return t.ErrorCode
			}
		}
	}
	return 0
}
