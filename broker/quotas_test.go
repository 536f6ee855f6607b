package broker

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	kafka "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/acl"
	"github.com/sluicehq/sluice/broker/quota"
)

func strp(s string) *string { return &s }

// describeAll lists every quota through kadm as "entity: k=v ..." lines.
func describeAll(t *testing.T, adm *kadm.Client) []string {
	t.Helper()
	qs, err := adm.DescribeClientQuotas(ctxT(t), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, q := range qs {
		line := q.Entity.String() + ":"
		for _, v := range q.Values {
			line += " " + v.String()
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return out
}

// TestClientQuotasKadm: kadm sets, describes, validates and removes
// quotas; refusals come back per entity with Kafka's code and message;
// the quotas survive a restart.
func TestClientQuotasKadm(t *testing.T) {
	dir := t.TempDir()
	b, addr := testBrokerDir(t, dir, Options{})
	adm := kadm.NewClient(newKgo(t, addr))
	ctx := ctxT(t)

	entries := []kadm.AlterClientQuotaEntry{
		{Entity: kadm.ClientQuotaEntity{{Type: "user", Name: strp("alice")}},
			Ops: []kadm.AlterClientQuotaOp{{Key: "producer_byte_rate", Value: 1048576}, {Key: "request_percentage", Value: 25.5}}},
		{Entity: kadm.ClientQuotaEntity{{Type: "user", Name: strp("alice")}, {Type: "client-id", Name: nil}},
			Ops: []kadm.AlterClientQuotaOp{{Key: "consumer_byte_rate", Value: 2048}}},
		{Entity: kadm.ClientQuotaEntity{{Type: "client-id", Name: nil}},
			Ops: []kadm.AlterClientQuotaOp{{Key: "controller_mutation_rate", Value: 10}}},
		{Entity: kadm.ClientQuotaEntity{{Type: "ip", Name: strp("10.0.0.1")}},
			Ops: []kadm.AlterClientQuotaOp{{Key: "connection_creation_rate", Value: 5}}},
		// Refused: an unknown key, a fraction for a Long.
		{Entity: kadm.ClientQuotaEntity{{Type: "user", Name: strp("bob")}},
			Ops: []kadm.AlterClientQuotaOp{{Key: "fetch_byte_rate", Value: 1}}},
		{Entity: kadm.ClientQuotaEntity{{Type: "client-id", Name: strp("x")}},
			Ops: []kadm.AlterClientQuotaOp{{Key: "producer_byte_rate", Value: 0.5}}},
	}
	// Validation alone changes nothing.
	res, err := adm.ValidateAlterClientQuotas(ctx, entries)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(entries) || res[0].Err != nil || !errors.Is(res[4].Err, kerr.InvalidRequest) {
		t.Fatalf("validate: %+v", res)
	}
	if got := describeAll(t, adm); len(got) != 0 {
		t.Fatalf("validate_only stored %v", got)
	}
	res, err = adm.AlterClientQuotas(ctx, entries)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if i < 4 && r.Err != nil {
			t.Fatalf("entry %d: %v %s", i, r.Err, r.ErrMessage)
		}
		if r.Entity.String() != entries[i].Entity.String() {
			t.Fatalf("entry %d answered for %v", i, r.Entity)
		}
	}
	if !errors.Is(res[4].Err, kerr.InvalidRequest) || res[4].ErrMessage != "Invalid configuration key fetch_byte_rate" {
		t.Fatalf("unknown key: %v %q", res[4].Err, res[4].ErrMessage)
	}
	if !errors.Is(res[5].Err, kerr.InvalidRequest) || res[5].ErrMessage != "Configuration producer_byte_rate must be a Long value" {
		t.Fatalf("fraction: %v %q", res[5].Err, res[5].ErrMessage)
	}
	want := []string{
		"{client-id=<default>}: controller_mutation_rate=10.000000",
		"{ip=10.0.0.1}: connection_creation_rate=5.000000",
		"{user=alice, client-id=<default>}: consumer_byte_rate=2048.000000",
		"{user=alice}: producer_byte_rate=1048576.000000 request_percentage=25.500000",
	}
	if got := describeAll(t, adm); !slices.Equal(got, want) {
		t.Fatalf("described\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Filters: alice exactly and strictly; any client id.
	qs, err := adm.DescribeClientQuotas(ctx, true, []kadm.DescribeClientQuotaComponent{{Type: "user", MatchName: strp("alice"), MatchType: 0}})
	if err != nil || len(qs) != 1 || len(qs[0].Values) != 2 {
		t.Fatalf("strict alice: %+v %v", qs, err)
	}
	qs, err = adm.DescribeClientQuotas(ctx, false, []kadm.DescribeClientQuotaComponent{{Type: "client-id", MatchType: 2}})
	if err != nil || len(qs) != 2 {
		t.Fatalf("any client-id: %+v %v", qs, err)
	}
	_, err = adm.DescribeClientQuotas(ctx, false, []kadm.DescribeClientQuotaComponent{{Type: "ip", MatchType: 2}, {Type: "user", MatchType: 2}})
	if !errors.Is(err, kerr.InvalidRequest) {
		t.Fatalf("ip with user filter: %v", err)
	}
	// Removing a key.
	res, err = adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{{Entity: entries[0].Entity,
		Ops: []kadm.AlterClientQuotaOp{{Key: "request_percentage", Remove: true}}}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("remove: %+v %v", res, err)
	}
	want[3] = "{user=alice}: producer_byte_rate=1048576.000000"
	// After a restart, the same.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	_, addr = testBrokerDir(t, dir, Options{})
	adm = kadm.NewClient(newKgo(t, addr))
	if got := describeAll(t, adm); !slices.Equal(got, want) {
		t.Fatalf("after restart\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestClientQuotasKafkaGo: kafka-go's admin client sets and describes
// quotas (its empty entity name is the default).
func TestClientQuotasKafkaGo(t *testing.T) {
	_, addr := testBroker(t, Options{})
	cl := &kafka.Client{Addr: kafka.TCP(addr)}
	ctx := ctxT(t)
	ares, err := cl.AlterClientQuotas(ctx, &kafka.AlterClientQuotasRequest{Entries: []kafka.AlterClientQuotaEntry{
		{Entities: []kafka.AlterClientQuotaEntity{{EntityType: "client-id", EntityName: "reports"}},
			Ops: []kafka.AlterClientQuotaOps{{Key: "consumer_byte_rate", Value: 4096}}},
		{Entities: []kafka.AlterClientQuotaEntity{{EntityType: "user", EntityName: ""}},
			Ops: []kafka.AlterClientQuotaOps{{Key: "producer_byte_rate", Value: 8192}}},
		{Entities: []kafka.AlterClientQuotaEntity{{EntityType: "topic", EntityName: "t"}},
			Ops: []kafka.AlterClientQuotaOps{{Key: "producer_byte_rate", Value: 1}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ares.Entries) != 3 || ares.Entries[0].Error != nil || ares.Entries[1].Error != nil ||
		!errors.Is(ares.Entries[2].Error, kafka.InvalidRequest) {
		t.Fatalf("alter: %+v", ares.Entries)
	}
	dres, err := cl.DescribeClientQuotas(ctx, &kafka.DescribeClientQuotasRequest{Components: []kafka.DescribeClientQuotasRequestComponent{
		{EntityType: "user", MatchType: 1},
	}})
	if err != nil || dres.Error != nil {
		t.Fatalf("describe: %v %v", err, dres)
	}
	if len(dres.Entries) != 1 || dres.Entries[0].Entities[0].EntityType != "user" || dres.Entries[0].Entities[0].EntityName != "" ||
		dres.Entries[0].Values[0].Key != "producer_byte_rate" || dres.Entries[0].Values[0].Value != 8192 {
		t.Fatalf("describe default user: %+v", dres.Entries)
	}
	dres, err = cl.DescribeClientQuotas(ctx, &kafka.DescribeClientQuotasRequest{Components: []kafka.DescribeClientQuotasRequestComponent{
		{EntityType: "client-id", MatchType: 0, Match: "reports"},
	}, Strict: true})
	if err != nil || len(dres.Entries) != 1 || dres.Entries[0].Values[0].Value != 4096 {
		t.Fatalf("describe reports: %+v %v", dres, err)
	}
}

// TestClientQuotasNeedClusterACLs: describing needs DESCRIBE_CONFIGS and
// altering ALTER_CONFIGS on the cluster, as in Kafka.
func TestClientQuotasNeedClusterACLs(t *testing.T) {
	b, addr := testBroker(t, Options{ACL: true})
	adm := kadm.NewClient(newKgo(t, addr))
	ctx := ctxT(t)
	entry := []kadm.AlterClientQuotaEntry{{Entity: kadm.ClientQuotaEntity{{Type: "user", Name: strp("u")}},
		Ops: []kadm.AlterClientQuotaOp{{Key: "producer_byte_rate", Value: 1}}}}
	if _, err := adm.DescribeClientQuotas(ctx, false, nil); !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("describe without ACLs: %v", err)
	}
	res, err := adm.AlterClientQuotas(ctx, entry)
	if err != nil || !errors.Is(res[0].Err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("alter without ACLs: %+v %v", res, err)
	}
	// DESCRIBE_CONFIGS does not allow altering; ALTER_CONFIGS implies it.
	for _, err := range b.authz.Create([]acl.Binding{allowB(resCluster, acl.ClusterName, anon, "*", opDescribeConfigs)}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := adm.DescribeClientQuotas(ctx, false, nil); err != nil {
		t.Fatalf("describe with DESCRIBE_CONFIGS: %v", err)
	}
	if res, _ := adm.AlterClientQuotas(ctx, entry); !errors.Is(res[0].Err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("alter with DESCRIBE_CONFIGS only: %+v", res)
	}
	for _, err := range b.authz.Create([]acl.Binding{allowB(resCluster, acl.ClusterName, anon, "*", opAlterConfigs)}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if res, err := adm.AlterClientQuotas(ctx, entry); err != nil || res[0].Err != nil {
		t.Fatalf("alter with ALTER_CONFIGS: %+v %v", res, err)
	}
	if b.quotas.Len() != 1 {
		t.Fatalf("%d entities stored, want 1", b.quotas.Len())
	}
}

// histogram reads the count and sum of a histogram series.
func histogram(t *testing.T, h prometheus.Observer) (uint64, float64) {
	t.Helper()
	var m dto.Metric
	if err := h.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// setQuota sets one quota through the protocol.
func setQuota(t *testing.T, addr string, entity kadm.ClientQuotaEntity, key string, v float64) {
	t.Helper()
	res, err := kadm.NewClient(newKgo(t, addr)).AlterClientQuotas(context.Background(),
		[]kadm.AlterClientQuotaEntry{{Entity: entity, Ops: []kadm.AlterClientQuotaOp{{Key: key, Value: v}}}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("set %s on %v: %+v %v", key, entity, res, err)
	}
}

var _ = kmsg.NewPtrFetchRequest
var _ = quota.ProducerByteRate
