package broker

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/broker/txn"
)

func TestMetrics(t *testing.T) {
	m := NewMetrics()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Collectors()...)
	_, addr := testBroker(t, Options{Metrics: m})
	cl := newKgo(t, addr, kgo.DisableIdempotentWrite(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, cl, "measured", 2)
	for range 3 {
		if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "measured", Partition: 0, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	want := `
# HELP sluice_broker_log_end_offset Log end offset (the next offset to be written) per partition.
# TYPE sluice_broker_log_end_offset gauge
sluice_broker_log_end_offset{partition="0",topic="measured"} 3
sluice_broker_log_end_offset{partition="1",topic="measured"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sluice_broker_log_end_offset"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("Produce", "NONE")); got != 3 {
		t.Fatalf("Produce requests counted: %v", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("CreateTopics", "NONE")); got != 1 {
		t.Fatalf("CreateTopics requests counted: %v", got)
	}
	if n := testutil.CollectAndCount(m.latency, "sluice_broker_request_duration_seconds"); n == 0 {
		t.Fatal("no request latencies observed")
	}
	if testutil.ToFloat64(m.bytesIn) == 0 || testutil.ToFloat64(m.bytesOut) == 0 {
		t.Fatal("byte counters did not move")
	}
	if got := testutil.ToFloat64(m.producedB.WithLabelValues("measured")); got == 0 {
		t.Fatal("produced bytes not counted")
	}
}

func TestTransactionMetrics(t *testing.T) {
	m := NewMetrics()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Collectors()...)
	b, addr := testBroker(t, Options{Metrics: m})
	createTopic(t, newKgo(t, addr), "tm", 1)
	prod := newKgo(t, addr, kgo.TransactionalID("tm"), kgo.DefaultProduceTopic("tm"))
	if err := runTxn(t, prod, []string{"a"}, true); err != nil {
		t.Fatal(err)
	}
	if err := runTxn(t, prod, []string{"b"}, false); err != nil {
		t.Fatal(err)
	}
	slow := newKgo(t, addr, kgo.TransactionalID("tm-slow"), kgo.DefaultProduceTopic("tm"), kgo.TransactionTimeout(200*time.Millisecond))
	slow.BeginTransaction()
	if err := slow.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("c")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the timeout abort", func() bool { d, _ := b.txns.Describe("tm-slow"); return d.State == txn.CompleteAbort })
	open := newKgo(t, addr, kgo.TransactionalID("tm-open"), kgo.DefaultProduceTopic("tm"))
	open.BeginTransaction()
	if err := open.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("d")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP sluice_broker_open_transactions Transactions open on a partition; the oldest holds its last stable offset back.
# TYPE sluice_broker_open_transactions gauge
sluice_broker_open_transactions{partition="0",topic="tm"} 1
# HELP sluice_broker_unstable_records Records between a partition's last stable offset and its end, held back from read_committed consumers by open transactions.
# TYPE sluice_broker_unstable_records gauge
sluice_broker_unstable_records{partition="0",topic="tm"} 1
# HELP sluice_broker_transactions Transactional ids by the state of their transaction (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort).
# TYPE sluice_broker_transactions gauge
sluice_broker_transactions{state="CompleteAbort"} 2
sluice_broker_transactions{state="CompleteCommit"} 0
sluice_broker_transactions{state="Empty"} 0
sluice_broker_transactions{state="Ongoing"} 1
sluice_broker_transactions{state="PrepareAbort"} 0
sluice_broker_transactions{state="PrepareCommit"} 0
# HELP sluice_broker_transactions_total Transactions completed (markers written), by result: commit, abort (by the producer or a newer instance), timeout (aborted by the broker).
# TYPE sluice_broker_transactions_total counter
sluice_broker_transactions_total{result="abort"} 1
sluice_broker_transactions_total{result="commit"} 1
sluice_broker_transactions_total{result="timeout"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sluice_broker_transactions", "sluice_broker_transactions_total", "sluice_broker_open_transactions", "sluice_broker_unstable_records"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("EndTxn", "NONE")); got != 2 {
		t.Fatalf("EndTxn requests counted: %v", got)
	}
}
