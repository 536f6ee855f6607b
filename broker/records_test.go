package broker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/acl"
	"github.com/sluicehq/sluice/broker/group"
)

// produceTo writes n one-record batches to one partition.
func produceToPartition(t *testing.T, cl *kgo.Client, topic string, partition int32, n int) {
	t.Helper()
	for i := range n {
		r := &kgo.Record{Topic: topic, Partition: partition, Value: []byte("value-" + strconv.Itoa(i) + "-padding-padding-padding")}
		if err := cl.ProduceSync(ctxT(t), r).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
}

// fetchCode fetches one partition at offset and returns the error code.
func fetchCode(t *testing.T, cl *kgo.Client, topic string, partition int32, offset int64) int16 {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.MaxWaitMillis, req.MaxBytes = 11, 0, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = partition, offset, 1<<20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

// TestDeleteRecordsKadm: kadm moves a partition's start inside the log;
// reads below it are OFFSET_OUT_OF_RANGE, ListOffsets earliest answers it,
// the segments below it are gone, Kafka's refusals come back per
// partition, and after a restart a kafka-go reader from the first offset
// starts there.
func TestDeleteRecordsKadm(t *testing.T) {
	dir := t.TempDir()
	b, addr := testBrokerDir(t, dir, Options{}) // closed by hand below, to restart
	cl := newKgo(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DisableIdempotentWrite())
	adm := kadm.NewClient(cl)
	ctx := ctxT(t)
	if _, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"segment.bytes": kadm.StringPtr("1024")}, "dr"); err != nil {
		t.Fatal(err)
	}
	produceToPartition(t, cl, "dr", 0, 100)
	produceToPartition(t, cl, "dr", 1, 10)

	var os1 kadm.Offsets
	os1.Add(kadm.Offset{Topic: "dr", Partition: 0, At: 40})
	os1.Add(kadm.Offset{Topic: "dr", Partition: 1, At: -1})
	res, err := adm.DeleteRecords(ctx, os1)
	if err != nil {
		t.Fatal(err)
	}
	if r := res["dr"][0]; r.Err != nil || r.LowWatermark != 40 {
		t.Fatalf("partition 0: %+v, want low watermark 40", r)
	}
	if r := res["dr"][1]; r.Err != nil || r.LowWatermark != 10 {
		t.Fatalf("partition 1 at -1: %+v, want the high watermark 10", r)
	}
	starts, err := adm.ListStartOffsets(ctx, "dr")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := starts.Lookup("dr", 0); o.Offset != 40 {
		t.Fatalf("earliest offset %d, want 40", o.Offset)
	}
	if c := fetchCode(t, cl, "dr", 0, 39); c != kerr.OffsetOutOfRange.Code {
		t.Fatalf("fetch below the start: code %d, want OFFSET_OUT_OF_RANGE", c)
	}
	if c := fetchCode(t, cl, "dr", 0, 40); c != 0 {
		t.Fatalf("fetch at the start: code %d", c)
	}
	if _, err := os.Stat(filepath.Join(dir, "topics", "dr", "0", "00000000000000000000.log")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the first segment, wholly below the start, is still there: %v", err)
	}

	var bad kadm.Offsets
	bad.Add(kadm.Offset{Topic: "dr", Partition: 0, At: 101})
	res, err = adm.DeleteRecords(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	if r := res["dr"][0]; !errors.Is(r.Err, kerr.OffsetOutOfRange) {
		t.Fatalf("past the high watermark: %v, want OFFSET_OUT_OF_RANGE", r.Err)
	}
	// v0, as older tools send it, to a partition that does not exist.
	raw := kmsg.NewPtrDeleteRecordsRequest()
	raw.Version = 0
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = "dr"
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition, rp.Offset = 5, 1
	rt.Partitions = append(rt.Partitions, rp)
	raw.Topics = append(raw.Topics, rt)
	// Sent to the node itself: kgo would refuse an unknown partition.
	kr, err := cl.Broker(0).Request(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if sp := kr.(*kmsg.DeleteRecordsResponse).Topics[0].Partitions[0]; sp.ErrorCode != kerr.UnknownTopicOrPartition.Code || sp.LowWatermark != -1 {
		t.Fatalf("no such partition: %+v, want UNKNOWN_TOPIC_OR_PARTITION and low watermark -1", sp)
	}
	b.Close()

	_, addr = testBrokerDir(t, dir, Options{})
	kc := &kafkago.Client{Addr: kafkago.TCP(addr)}
	lo, err := kc.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{"dr": {kafkago.FirstOffsetOf(0), kafkago.FirstOffsetOf(1)}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, po := range lo.Topics["dr"] {
		want := map[int]int64{0: 40, 1: 10}[po.Partition]
		if po.Error != nil || po.FirstOffset != want {
			t.Fatalf("after restart partition %d starts at %d (%v), want %d", po.Partition, po.FirstOffset, po.Error, want)
		}
	}
	rd := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{addr}, Topic: "dr", Partition: 0, MaxWait: 100 * time.Millisecond})
	defer rd.Close()
	rd.SetOffset(kafkago.FirstOffset)
	m, err := rd.ReadMessage(ctx)
	if err != nil || m.Offset != 40 {
		t.Fatalf("kafka-go reader from the first offset read offset %d (%v), want 40", m.Offset, err)
	}
}

// commitOffsets commits offset 5 for each partition of each topic.
func commitOffsets(t *testing.T, adm *kadm.Client, group string, tps map[string][]int32) {
	t.Helper()
	var os kadm.Offsets
	for topic, ps := range tps {
		for _, p := range ps {
			os.Add(kadm.Offset{Topic: topic, Partition: p, At: 5, LeaderEpoch: -1})
		}
	}
	res, err := adm.CommitOffsets(ctxT(t), group, os)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func committed(t *testing.T, adm *kadm.Client, group string) map[string][]int32 {
	t.Helper()
	res, err := adm.FetchOffsets(ctxT(t), group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]int32{}
	res.Each(func(o kadm.OffsetResponse) {
		if o.At >= 0 {
			out[o.Topic] = append(out[o.Topic], o.Partition)
		}
	})
	return out
}

// TestOffsetDelete: kadm and kafka-go delete committed offsets; the
// deletion survives a restart; an unknown group is GROUP_ID_NOT_FOUND and a
// topic an active member subscribes to is GROUP_SUBSCRIBED_TO_TOPIC while
// the group's other topics' offsets go.
func TestOffsetDelete(t *testing.T) {
	dir := t.TempDir()
	b, addr := testBrokerDir(t, dir, Options{})
	cl := newKgo(t, addr)
	adm := kadm.NewClient(cl)
	ctx := ctxT(t)
	createTopic(t, cl, "od", 2)
	createTopic(t, cl, "other", 1)
	commitOffsets(t, adm, "g", map[string][]int32{"od": {0, 1}, "other": {0}})

	res, err := adm.DeleteOffsets(ctx, "g", kadm.TopicsSet{"od": {0: {}}})
	if err != nil || res.Error() != nil {
		t.Fatalf("kadm delete: %v %v", err, res.Error())
	}
	kc := &kafkago.Client{Addr: kafkago.TCP(addr)}
	kr, err := kc.OffsetDelete(ctx, &kafkago.OffsetDeleteRequest{GroupID: "g", Topics: map[string][]int{"other": {0}}})
	if err != nil || kr.Error != nil || kr.Topics["other"][0].Error != nil {
		t.Fatalf("kafka-go delete: %v %+v", err, kr)
	}
	b.Close()
	_, addr = testBrokerDir(t, dir, Options{})
	cl = newKgo(t, addr)
	adm = kadm.NewClient(cl)
	if got := committed(t, adm, "g"); len(got) != 1 || len(got["od"]) != 1 || got["od"][0] != 1 {
		t.Fatalf("after deleting od-0 and other-0 and a restart, committed: %v; want od-1 alone", got)
	}

	if _, err := adm.DeleteOffsets(ctx, "nosuch", kadm.TopicsSet{"od": {0: {}}}); !errors.Is(err, kerr.GroupIDNotFound) {
		t.Fatalf("unknown group: %v, want GROUP_ID_NOT_FOUND", err)
	}
	kr, err = (&kafkago.Client{Addr: kafkago.TCP(addr)}).OffsetDelete(ctx, &kafkago.OffsetDeleteRequest{GroupID: "nosuch", Topics: map[string][]int{"od": {0}}})
	if err != nil || !errors.Is(kr.Error, kafkago.GroupIdNotFound) {
		t.Fatalf("kafka-go, unknown group: %v %v, want GROUP_ID_NOT_FOUND", err, kr.Error)
	}

	// A member consuming od: its offsets stay, other's go.
	commitOffsets(t, adm, "live", map[string][]int32{"od": {0}, "other": {0}})
	member := newKgo(t, addr, kgo.ConsumerGroup("live"), kgo.ConsumeTopics("od"), kgo.DisableAutoCommit())
	for {
		ds, err := adm.DescribeGroups(ctx, "live")
		if err != nil {
			t.Fatal(err)
		}
		if ds["live"].State == "Stable" {
			break
		}
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		member.PollFetches(pctx)
		cancel()
	}
	res, err = adm.DeleteOffsets(ctx, "live", kadm.TopicsSet{"od": {0: {}}, "other": {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := res.Lookup("od", 0); !errors.Is(e, kerr.GroupSubscribedToTopic) {
		t.Fatalf("subscribed topic: %v, want GROUP_SUBSCRIBED_TO_TOPIC", e)
	}
	if e, _ := res.Lookup("other", 0); e != nil {
		t.Fatalf("unsubscribed topic: %v", e)
	}
	if got := committed(t, adm, "live"); len(got) != 1 || len(got["od"]) != 1 {
		t.Fatalf("committed after deleting with a member: %v; want od-0 alone", got)
	}
}

// TestDeleteRecordsAndOffsetsNeedACLs: DeleteRecords needs DELETE on the
// topic; OffsetDelete needs DELETE on the group, then READ on each topic.
func TestDeleteRecordsAndOffsetsNeedACLs(t *testing.T) {
	b, addr := testBroker(t, Options{ACL: true})
	for _, err := range b.authz.Create([]acl.Binding{
		allowB(resCluster, acl.ClusterName, anon, "*", opCreate),
		allowB(resTopic, "a", anon, "*", opDescribe),
		allowB(resTopic, "a", anon, "*", opWrite),
		allowB(resGroup, "g", anon, "*", opRead),
	}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	cl := newKgo(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DisableIdempotentWrite())
	adm := kadm.NewClient(cl)
	ctx := ctxT(t)
	createTopic(t, cl, "a", 1)
	produceToPartition(t, cl, "a", 0, 3)
	var os1 kadm.Offsets
	os1.Add(kadm.Offset{Topic: "a", Partition: 0, At: 2})
	res, err := adm.DeleteRecords(ctx, os1)
	if err == nil {
		err = res["a"][0].Err
	}
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("delete records without DELETE: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	// Committed by the coordinator directly: OffsetCommit needs READ on
	// the topic, which this test withholds.
	if err := b.groups.Commit(group.CommitRequest{Group: "g", Generation: -1,
		Offsets: []group.Offset{{TopicPartition: group.TopicPartition{Topic: "a"}, Offset: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.DeleteOffsets(ctx, "g", kadm.TopicsSet{"a": {0: {}}}); !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Fatalf("delete offsets without group DELETE: %v, want GROUP_AUTHORIZATION_FAILED", err)
	}
	for _, err := range b.authz.Create([]acl.Binding{
		allowB(resGroup, "g", anon, "*", opDelete),
		allowB(resTopic, "a", anon, "*", opDelete),
	}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	dres, err := adm.DeleteOffsets(ctx, "g", kadm.TopicsSet{"a": {0: {}}})
	if e, _ := dres.Lookup("a", 0); err != nil || !errors.Is(e, kerr.TopicAuthorizationFailed) {
		t.Fatalf("delete offsets without topic READ: %v %v, want TOPIC_AUTHORIZATION_FAILED", err, e)
	}
	res, err = adm.DeleteRecords(ctx, os1)
	if err != nil || res["a"][0].Err != nil || res["a"][0].LowWatermark != 2 {
		t.Fatalf("delete records with DELETE: %+v %v", res["a"][0], err)
	}
}
