package broker

import (
	"errors"
	"testing"

	kafka "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/broker/acl"
)

// TestCreatePartitionsKadm: a topic grows with kadm; the new partitions
// take records at once, keep them across a restart, and Kafka's refusals
// change nothing.
func TestCreatePartitionsKadm(t *testing.T) {
	dir := t.TempDir()
	b, addr := testBrokerDir(t, dir, Options{})
	cl := newKgo(t, addr)
	adm := kadm.NewClient(cl)
	createTopic(t, cl, "grow", 2)
	res, err := adm.UpdatePartitions(ctxT(t), 5, "grow")
	if err != nil || res["grow"].Err != nil {
		t.Fatalf("grow to 5: %+v %v", res, err)
	}
	// A new client: kgo keeps metadata for a while.
	pr := newKgo(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := range int32(5) {
		r := &kgo.Record{Topic: "grow", Partition: p, Value: []byte{byte('a' + p)}}
		if err := pr.ProduceSync(ctxT(t), r).FirstErr(); err != nil {
			t.Fatalf("produce to partition %d: %v", p, err)
		}
	}
	for _, c := range []struct {
		name  string
		topic string
		set   int
		want  *kerr.Error
	}{
		{"same count", "grow", 5, kerr.InvalidPartitions},
		{"shrink", "grow", 3, kerr.InvalidPartitions},
		{"over the per-topic limit", "grow", MaxPartitionsPerTopic + 1, kerr.InvalidPartitions},
		{"unknown topic", "nope", 3, kerr.UnknownTopicOrPartition},
	} {
		res, err := adm.UpdatePartitions(ctxT(t), c.set, c.topic)
		if err != nil || !errors.Is(res[c.topic].Err, c.want) {
			t.Fatalf("%s: %+v %v, want %v", c.name, res, err, c.want)
		}
	}
	b.Close()
	_, addr = testBrokerDir(t, dir, Options{})
	cl = newKgo(t, addr, kgo.ConsumeTopics("grow"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	md, err := kadm.NewClient(cl).Metadata(ctxT(t), "grow")
	if err != nil || len(md.Topics["grow"].Partitions) != 5 {
		t.Fatalf("after a restart: %+v %v, want 5 partitions", md.Topics["grow"], err)
	}
	got := map[int32]string{}
	for len(got) < 5 {
		fs := cl.PollFetches(ctxT(t))
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) { got[r.Partition] = string(r.Value) })
	}
	for p := range int32(5) {
		if got[p] != string(rune('a'+p)) {
			t.Fatalf("after a restart partition %d holds %q", p, got[p])
		}
	}
}

// TestCreatePartitionsKafkaGo: kafka-go's CreatePartitions, with replica
// assignments naming this node or another, and validate-only.
func TestCreatePartitionsKafkaGo(t *testing.T) {
	_, addr := testBroker(t, Options{})
	cl := newKgo(t, addr)
	createTopic(t, cl, "kg", 1)
	kc := &kafka.Client{Addr: kafka.TCP(addr)}
	try := func(validate bool, count int32, brokers ...int32) error {
		t.Helper()
		tc := kafka.TopicPartitionsConfig{Name: "kg", Count: count}
		for _, id := range brokers {
			tc.TopicPartitionAssignments = append(tc.TopicPartitionAssignments, kafka.TopicPartitionAssignment{BrokerIDs: []int32{id}})
		}
		resp, err := kc.CreatePartitions(ctxT(t), &kafka.CreatePartitionsRequest{Topics: []kafka.TopicPartitionsConfig{tc}, ValidateOnly: validate})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Errors["kg"]
	}
	if err := try(false, 3, 0, 4); !errors.Is(err, kafka.InvalidReplicaAssignment) {
		t.Fatalf("assignment to broker 4: %v, want INVALID_REPLICA_ASSIGNMENT", err)
	}
	if err := try(false, 3, 0); !errors.Is(err, kafka.InvalidReplicaAssignment) {
		t.Fatalf("one assignment for two new partitions: %v, want INVALID_REPLICA_ASSIGNMENT", err)
	}
	if err := try(true, 3); err != nil {
		t.Fatalf("validate only: %v", err)
	}
	if n := partitionsOf(t, addr, "kg"); n != 1 {
		t.Fatalf("after refusals and a validation the topic has %d partitions, want 1", n)
	}
	if err := try(false, 3, 0, 0); err != nil {
		t.Fatalf("grow to 3 on node 0: %v", err)
	}
	if n := partitionsOf(t, addr, "kg"); n != 3 {
		t.Fatalf("the topic has %d partitions, want 3", n)
	}
}

// partitionsOf asks the broker at addr how many partitions topic has,
// with a new client: kgo answers metadata requests from its cache for a
// while.
func partitionsOf(t *testing.T, addr, topic string) int {
	t.Helper()
	md, err := kadm.NewClient(newKgo(t, addr)).Metadata(ctxT(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	return len(md.Topics[topic].Partitions)
}

// TestCreatePartitionsNeedsAlter: ALTER on the topic, as Kafka.
func TestCreatePartitionsNeedsAlter(t *testing.T) {
	b, addr := testBroker(t, Options{ACL: true})
	for _, err := range b.authz.Create([]acl.Binding{
		allowB(resCluster, acl.ClusterName, anon, "*", opCreate),
		allowB(resTopic, "a", anon, "*", opDescribe),
	}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	cl := newKgo(t, addr)
	createTopic(t, cl, "a", 1)
	res, err := kadm.NewClient(cl).CreatePartitions(ctxT(t), 1, "a")
	if err != nil || !errors.Is(res["a"].Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("add a partition without ALTER: %+v %v, want TOPIC_AUTHORIZATION_FAILED", res, err)
	}
}
