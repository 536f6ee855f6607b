package broker

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
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
