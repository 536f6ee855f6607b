package broker

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	kafka "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/acl"
)

// configOf returns topic or broker resource name's config key as described.
func configOf(t *testing.T, rcs kadm.ResourceConfigs, key string) kadm.Config {
	t.Helper()
	if len(rcs) != 1 || rcs[0].Err != nil {
		t.Fatalf("describe: %+v", rcs)
	}
	for _, c := range rcs[0].Configs {
		if c.Key == key {
			return c
		}
	}
	t.Fatalf("describe %s: no %s among %+v", rcs[0].Name, key, rcs[0].Configs)
	return kadm.Config{}
}

// produceSize produces one record of n bytes to topic and returns the error.
func produceSize(t *testing.T, cl *kgo.Client, topic string, n int) error {
	t.Helper()
	v := make([]byte, n)
	rand.Read(v) // incompressible, so the batch is as big as the record
	return cl.ProduceSync(ctxT(t), &kgo.Record{Topic: topic, Value: v}).FirstErr()
}

// TestAlterTopicConfigsLive: IncrementalAlterConfigs (kadm) changes a
// topic's configs while the broker runs: the next produce obeys the new
// max.message.bytes, the log rolls at the new segment.bytes, describe
// reports them as the topic's, and they survive a restart.
func TestAlterTopicConfigsLive(t *testing.T) {
	dir := t.TempDir()
	b, addr := testBrokerDir(t, dir, Options{})
	cl := newKgo(t, addr, kgo.ProducerBatchMaxBytes(1<<20), kgo.RecordRetries(0))
	adm := kadm.NewClient(cl)
	createTopic(t, cl, "live", 1)
	if err := produceSize(t, cl, "live", 20_000); err != nil {
		t.Fatal(err)
	}
	res, err := adm.AlterTopicConfigs(ctxT(t), []kadm.AlterConfig{
		{Name: "max.message.bytes", Value: kmsg.StringPtr("10000")},
		{Name: "segment.bytes", Value: kmsg.StringPtr("4096")},
	}, "live")
	if err != nil || res[0].Err != nil {
		t.Fatalf("alter: %+v %v", res, err)
	}
	if err := produceSize(t, cl, "live", 20_000); !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("a 20 kB record after max.message.bytes=10000: %v, want MESSAGE_TOO_LARGE", err)
	}
	for range 4 {
		if err := produceSize(t, cl, "live", 3000); err != nil {
			t.Fatal(err)
		}
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "topics", "live", "0", "*.log"))
	if len(logs) < 3 {
		t.Fatalf("%d segment files after segment.bytes=4096 and 4 records of 3 kB, want the log rolled: %v", len(logs), logs)
	}
	rcs, err := adm.DescribeTopicConfigs(ctxT(t), "live")
	if err != nil {
		t.Fatal(err)
	}
	if c := configOf(t, rcs, "max.message.bytes"); *c.Value != "10000" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("max.message.bytes described as %+v", c)
	}
	// Delete one override, append to a list, subtract from it.
	res, err = adm.AlterTopicConfigs(ctxT(t), []kadm.AlterConfig{
		{Op: kadm.DeleteConfig, Name: "segment.bytes"},
		{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: kmsg.StringPtr("delete")},
	}, "live")
	if err != nil || res[0].Err != nil {
		t.Fatalf("alter: %+v %v", res, err)
	}
	b.Close()
	_, addr = testBrokerDir(t, dir, Options{})
	cl = newKgo(t, addr, kgo.RecordRetries(0))
	rcs, err = kadm.NewClient(cl).DescribeTopicConfigs(ctxT(t), "live")
	if err != nil {
		t.Fatal(err)
	}
	if c := configOf(t, rcs, "max.message.bytes"); *c.Value != "10000" {
		t.Fatalf("after a restart max.message.bytes is %+v, want 10000", c)
	}
	if c := configOf(t, rcs, "segment.bytes"); c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("after its override was deleted segment.bytes is %+v, want the default", c)
	}
	if c := configOf(t, rcs, "cleanup.policy"); *c.Value != "delete" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("cleanup.policy is %+v, want delete set on the topic", c)
	}
	if err := produceSize(t, cl, "live", 20_000); !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("after a restart a 20 kB record: %v, want MESSAGE_TOO_LARGE", err)
	}
}

// TestAlterConfigsRefusals: what Kafka refuses, with its codes, changes
// nothing.
func TestAlterConfigsRefusals(t *testing.T) {
	_, addr := testBroker(t, Options{})
	cl := newKgo(t, addr)
	createTopic(t, cl, "r", 1)
	adm := kadm.NewClient(cl)
	for _, c := range []struct {
		name    string
		topic   string
		configs []kadm.AlterConfig
		want    *kerr.Error
	}{
		{"unknown topic", "nope", []kadm.AlterConfig{{Name: "retention.ms", Value: kmsg.StringPtr("1000")}}, kerr.UnknownTopicOrPartition},
		{"unknown config", "r", []kadm.AlterConfig{{Name: "retention.msec", Value: kmsg.StringPtr("1000")}}, kerr.InvalidConfig},
		{"bad value", "r", []kadm.AlterConfig{{Name: "retention.ms", Value: kmsg.StringPtr("soon")}}, kerr.InvalidConfig},
		{"append to a number", "r", []kadm.AlterConfig{{Op: kadm.AppendConfig, Name: "retention.ms", Value: kmsg.StringPtr("1")}}, kerr.InvalidConfig},
		{"named twice", "r", []kadm.AlterConfig{{Name: "retention.ms", Value: kmsg.StringPtr("1")}, {Name: "retention.ms", Value: kmsg.StringPtr("2")}}, kerr.InvalidRequest},
		{"unknown cleanup policy", "r", []kadm.AlterConfig{{Name: "cleanup.policy", Value: kmsg.StringPtr("forever")}}, kerr.InvalidConfig},
	} {
		res, err := adm.AlterTopicConfigs(ctxT(t), c.configs, c.topic)
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(res[0].Err, c.want) {
			t.Fatalf("%s: %v (%s), want %v", c.name, res[0].Err, res[0].ErrMessage, c.want)
		}
	}
	rcs, err := adm.DescribeTopicConfigs(ctxT(t), "r")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rcs[0].Configs {
		if c.Source != kmsg.ConfigSourceDefaultConfig {
			t.Fatalf("after refusals %s is %+v, want untouched", c.Key, c)
		}
	}
}

// TestAlterConfigsKafkaGo: kafka-go's AlterConfigs (the non-incremental
// API) replaces a topic's whole set of overrides.
func TestAlterConfigsKafkaGo(t *testing.T) {
	_, addr := testBroker(t, Options{})
	cl := newKgo(t, addr)
	createTopic(t, cl, "kg", 1)
	kc := &kafka.Client{Addr: kafka.TCP(addr)}
	alter := func(entries ...kafka.AlterConfigRequestConfig) {
		t.Helper()
		resp, err := kc.AlterConfigs(ctxT(t), &kafka.AlterConfigsRequest{Resources: []kafka.AlterConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: "kg", Configs: entries}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.Errors {
			if e != nil {
				t.Fatal(e)
			}
		}
	}
	alter(kafka.AlterConfigRequestConfig{Name: "retention.ms", Value: "60000"}, kafka.AlterConfigRequestConfig{Name: "segment.ms", Value: "60000"})
	alter(kafka.AlterConfigRequestConfig{Name: "retention.ms", Value: "120000"})
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctxT(t), "kg")
	if err != nil {
		t.Fatal(err)
	}
	if c := configOf(t, rcs, "retention.ms"); *c.Value != "120000" {
		t.Fatalf("retention.ms %+v, want 120000", c)
	}
	if c := configOf(t, rcs, "segment.ms"); c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("segment.ms %+v: AlterConfigs without it must reset it", c)
	}
}

// TestBrokerConfigs: the broker describes its configs; the dynamic ones
// change, cluster-wide and for this node (which wins), reach the topics
// that do not override them, and persist; a static one is refused.
func TestBrokerConfigs(t *testing.T) {
	dir := t.TempDir()
	b, addr := testBrokerDir(t, dir, Options{NodeID: 2})
	cl := newKgo(t, addr, kgo.RecordRetries(0))
	adm := kadm.NewClient(cl)
	createTopic(t, cl, "plain", 1)
	createTopic(t, cl, "own", 1)
	if res, err := adm.AlterTopicConfigs(ctxT(t), []kadm.AlterConfig{{Name: "max.message.bytes", Value: kmsg.StringPtr("50000")}}, "own"); err != nil || res[0].Err != nil {
		t.Fatalf("alter own: %+v %v", res, err)
	}
	rcs, err := adm.DescribeBrokerConfigs(ctxT(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	if c := configOf(t, rcs, "node.id"); *c.Value != "2" || c.Source != kmsg.ConfigSourceStaticBrokerConfig {
		t.Fatalf("node.id %+v", c)
	}
	if c := configOf(t, rcs, "message.max.bytes"); c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("message.max.bytes %+v, want the default", c)
	}

	if res, err := adm.AlterBrokerConfigs(ctxT(t), []kadm.AlterConfig{{Name: "message.max.bytes", Value: kmsg.StringPtr("20000")}}); err != nil || res[0].Err != nil {
		t.Fatalf("alter cluster-wide: %+v %v", res, err)
	}
	if res, err := adm.AlterBrokerConfigs(ctxT(t), []kadm.AlterConfig{{Name: "message.max.bytes", Value: kmsg.StringPtr("10000")}}, 2); err != nil || res[0].Err != nil {
		t.Fatalf("alter node 2: %+v %v", res, err)
	}
	if err := produceSize(t, cl, "plain", 15_000); !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("15 kB to a topic without its own limit, node limit 10000: %v, want MESSAGE_TOO_LARGE", err)
	}
	if err := produceSize(t, cl, "own", 15_000); err != nil {
		t.Fatalf("15 kB to a topic with its own limit 50000: %v", err)
	}
	rcs, err = adm.DescribeTopicConfigs(ctxT(t), "plain")
	if err != nil {
		t.Fatal(err)
	}
	if c := configOf(t, rcs, "max.message.bytes"); *c.Value != "10000" || c.Source != kmsg.ConfigSourceDynamicBrokerConfig {
		t.Fatalf("plain's max.message.bytes %+v, want 10000 from the node's dynamic config", c)
	}
	res, err := adm.AlterBrokerConfigs(ctxT(t), []kadm.AlterConfig{{Name: "node.id", Value: kmsg.StringPtr("5")}}, 2)
	if err != nil || !errors.Is(res[0].Err, kerr.InvalidRequest) || !strings.Contains(res[0].ErrMessage, "restart") {
		t.Fatalf("alter node.id: %+v %v, want INVALID_REQUEST saying to restart", res, err)
	}
	other := kmsg.NewPtrIncrementalAlterConfigsRequest()
	rr := kmsg.NewIncrementalAlterConfigsRequestResource()
	rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeBroker, "3"
	rc := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	rc.Name, rc.Value = "message.max.bytes", kmsg.StringPtr("1")
	rr.Configs = append(rr.Configs, rc)
	other.Resources = append(other.Resources, rr)
	if resp, err := other.RequestWith(ctxT(t), kgoBroker(t, addr)); err != nil || resp.Resources[0].ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("alter node 3 of a node-2 broker: %+v %v, want INVALID_REQUEST", resp, err)
	}

	b.Close()
	b, addr = testBrokerDir(t, dir, Options{NodeID: 2})
	cl = newKgo(t, addr, kgo.RecordRetries(0))
	if err := produceSize(t, cl, "plain", 15_000); !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("after a restart 15 kB: %v, want MESSAGE_TOO_LARGE", err)
	}
	rcs, err = kadm.NewClient(cl).DescribeBrokerConfigs(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if c := configOf(t, rcs, "message.max.bytes"); *c.Value != "20000" || c.Source != kmsg.ConfigSourceDynamicDefaultBrokerConfig {
		t.Fatalf("cluster-wide message.max.bytes %+v after a restart, want 20000", c)
	}
	// A damaged file is an error that says what to do, not a silent reset.
	cl.Close()
	b.Close()
	if err := os.WriteFile(filepath.Join(dir, brokerConfigsFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "fix or delete") {
		t.Fatalf("open with a damaged %s: %v, want an error saying what to do", brokerConfigsFile, err)
	}
}

// TestAlterConfigsNeedACLs: ALTER_CONFIGS on the topic or on the cluster.
func TestAlterConfigsNeedACLs(t *testing.T) {
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
	adm := kadm.NewClient(cl)
	res, err := adm.AlterTopicConfigs(ctxT(t), []kadm.AlterConfig{{Name: "retention.ms", Value: kmsg.StringPtr("1000")}}, "a")
	if err != nil || !errors.Is(res[0].Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("alter topic without ALTER_CONFIGS: %+v %v", res, err)
	}
	res, err = adm.AlterBrokerConfigs(ctxT(t), []kadm.AlterConfig{{Name: "log.retention.ms", Value: kmsg.StringPtr("1000")}})
	if err != nil || !errors.Is(res[0].Err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("alter broker without ALTER_CONFIGS: %+v %v", res, err)
	}
}
