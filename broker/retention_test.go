package broker

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestBackgroundRetention(t *testing.T) {
	_, addr := testBroker(t, Options{RetentionCheckInterval: 10 * time.Millisecond})
	cl := newKgo(t, addr, kgo.DisableIdempotentWrite(), kgo.ProducerBatchCompression(kgo.NoCompression()))
	// Small segments and one hour of retention, set as topic configs.
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "aging", 1, 1
	for k, v := range map[string]string{"segment.bytes": "1024", "retention.ms": "3600000"} {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, kmsg.StringPtr(v)
		rt.Configs = append(rt.Configs, c)
	}
	req.Topics = append(req.Topics, rt)
	if resp, err := req.RequestWith(ctxT(t), cl); err != nil || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("create: %v %v", err, resp)
	}
	old := time.Now().Add(-2 * time.Hour)
	value := make([]byte, 300)
	for range 10 {
		if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "aging", Value: value, Timestamp: old}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// Records from now stay.
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "aging", Value: value}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for listOffset(t, cl, "aging", 0, -2) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("retention did not delete the old segments")
		}
		time.Sleep(10 * time.Millisecond) // polling the broker's state; nothing to wait on
	}
	if end := listOffset(t, cl, "aging", 0, -1); end != 11 {
		t.Fatalf("end offset %d after retention", end)
	}
	if start := listOffset(t, cl, "aging", 0, -2); start > 10 {
		t.Fatalf("retention deleted the current record: log start %d", start)
	}
}
