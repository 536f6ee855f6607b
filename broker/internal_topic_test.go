package broker

import (
	"errors"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestOffsetsTopicInMetadata: __consumer_offsets is listed as Kafka lists
// it (internal, with the partitions of our one offsets log), hidden where
// clients hide internal topics, and cannot be created, deleted or
// produced to; a regex consumer does not subscribe to it.
func TestOffsetsTopicInMetadata(t *testing.T) {
	_, addr := testBroker(t, Options{AutoCreateTopics: true})
	cl := newKgo(t, addr)
	adm := kadm.NewClient(cl)
	createTopic(t, cl, "events", 2)

	all, err := adm.ListTopicsWithInternal(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	ot, ok := all[offsetsTopic]
	if !ok || !ot.IsInternal || len(ot.Partitions) != offsetsTopicPartitions || ot.ID == ([16]byte{}) {
		t.Fatalf("all topics with internal: %+v", all)
	}
	users, err := adm.ListTopics(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if names := users.Names(); !slices.Equal(names, []string{"events"}) {
		t.Fatalf("user topics: %v", names)
	}

	cr, err := adm.CreateTopic(ctxT(t), 1, 1, nil, offsetsTopic)
	if !errors.Is(err, kerr.TopicAlreadyExists) && !errors.Is(cr.Err, kerr.TopicAlreadyExists) {
		t.Fatalf("create %s: %v %v, want TOPIC_ALREADY_EXISTS", offsetsTopic, err, cr.Err)
	}
	dr, err := adm.DeleteTopics(ctxT(t), offsetsTopic)
	if err != nil || !errors.Is(dr[offsetsTopic].Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("delete %s: %v %+v, want TOPIC_AUTHORIZATION_FAILED", offsetsTopic, err, dr)
	}
	p := newKgo(t, addr, kgo.RecordRetries(1))
	err = p.ProduceSync(ctxT(t), &kgo.Record{Topic: offsetsTopic, Value: []byte("x")}).FirstErr()
	if !errors.Is(err, kerr.InvalidTopicException) {
		t.Fatalf("produce to %s: %v, want INVALID_TOPIC_EXCEPTION", offsetsTopic, err)
	}
	// Still listed once, not made into a topic by the auto-create above.
	all, err = adm.ListTopicsWithInternal(ctxT(t))
	if err != nil || len(all) != 2 || all[offsetsTopic].Err != nil {
		t.Fatalf("after the refused writes: %v %+v", err, all)
	}

	// Read directly it is an empty log, as a consumer naming it sees.
	ends, err := adm.ListEndOffsets(ctxT(t), offsetsTopic)
	if e, ok := ends.Lookup(offsetsTopic, 0); err != nil || !ok || e.Err != nil || e.Offset != 0 {
		t.Fatalf("end offset of %s: %v %+v", offsetsTopic, err, e)
	}
	f := kmsg.NewPtrFetchRequest()
	f.MaxBytes, f.MaxWaitMillis = 1<<20, 10
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = offsetsTopic
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	f.Topics = append(f.Topics, ft)
	fr, err := f.RequestWith(ctxT(t), kgoBroker(t, addr))
	if err != nil || fr.Topics[0].Partitions[0].ErrorCode != 0 || fr.Topics[0].Partitions[0].HighWatermark != 0 || len(fr.Topics[0].Partitions[0].RecordBatches) != 0 {
		t.Fatalf("fetch of %s: %v %+v", offsetsTopic, err, fr)
	}

	// A regex consumer of everything reads the user topic and leaves the
	// internal one alone, as on Kafka.
	produceN(t, addr, "events", 0, 10)
	c := newKgo(t, addr, kgo.ConsumeRegex(), kgo.ConsumeTopics(".*"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	n := 0
	for n < 10 {
		fs := c.PollFetches(ctxT(t))
		if err := fs.Err0(); err != nil {
			t.Fatalf("regex consumer: %v", err)
		}
		n += fs.NumRecords()
	}
	if topics := c.GetConsumeTopics(); !slices.Equal(topics, []string{"events"}) {
		t.Fatalf("a regex consumer of .* consumes %v", topics)
	}
}
