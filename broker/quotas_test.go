package broker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	kafka "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
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

// throttleHook records the throttles a kgo client was told of.
type throttleHook struct {
	mu    sync.Mutex
	times []time.Duration
}

func (h *throttleHook) OnBrokerThrottle(_ kgo.BrokerMetadata, d time.Duration, _ bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.times = append(h.times, d)
}

func (h *throttleHook) seen() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.times)
}

// TestProduceQuotaThrottlesKgo: a kgo producer over a small
// producer_byte_rate is told throttle times, which are the ones the
// broker counted, and every record it produced is stored.
func TestProduceQuotaThrottlesKgo(t *testing.T) {
	b, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "q", 1)
	const rate = 10 << 10
	setQuota(t, addr, kadm.ClientQuotaEntity{{Type: "client-id", Name: strp("slow")}}, "producer_byte_rate", rate)
	hook := &throttleHook{}
	cl := newKgo(t, addr, kgo.ClientID("slow"), kgo.DefaultProduceTopic("q"), kgo.WithHooks(hook), kgo.ProducerLinger(0))
	// Random, so compression cannot shrink it.
	value := make([]byte, 8<<10)
	rand.Read(value)
	produced := 0
	// The window allows about ten seconds of the rate before a throttle;
	// stop at the first one the client is told of.
	for produced < 100 && len(hook.seen()) == 0 {
		if err := cl.ProduceSync(ctxT(t), &kgo.Record{Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		produced++
	}
	seen := hook.seen()
	if len(seen) == 0 {
		t.Fatalf("%d records of %d bytes over a %d B/s quota and no throttle", produced, len(value), rate)
	}
	if produced*len(value) < (quota.WindowSamples-1)*rate {
		t.Fatalf("throttled after %d bytes, before the window's %d", produced*len(value), (quota.WindowSamples-1)*rate)
	}
	// The client may read the response of the last produce after
	// ProduceSync returned: wait until it has heard of every throttle the
	// broker counted.
	count, sum := histogram(t, b.metrics.throttles.WithLabelValues(quotaProduce))
	for ctx := ctxT(t); ctx.Err() == nil && len(seen) < int(count); time.Sleep(10 * time.Millisecond) {
		seen = hook.seen()
	}
	var want time.Duration
	for _, d := range seen {
		if d <= 0 {
			t.Fatalf("throttle %v", d)
		}
		want += d
	}
	if count != uint64(len(seen)) || math.Abs(sum-want.Seconds()) > 1e-6 {
		t.Fatalf("broker counted %d throttles, %.3fs; the client was told of %v", count, sum, seen)
	}
	key := quota.SensorKey{Key: quota.ProducerByteRate, Tags: quota.Tags{ClientID: "slow"}}
	if r, ok := b.sensors.Rate(key, time.Now()); !ok || r <= 0 {
		t.Fatalf("no rate measured for %v: %v %v", key, r, ok)
	}
	if end := b.topics.get("q").parts[0].EndOffset(); end != int64(produced) {
		t.Fatalf("log holds %d records, %d were produced", end, produced)
	}
	// Fetch is another quota: a consumer of the same client id is not
	// throttled.
	if _, _, ok := b.quotas.Resolve(quota.ConsumerByteRate, "ANONYMOUS", "slow"); ok {
		t.Fatal("consumer_byte_rate resolved from a producer quota")
	}
}

// rawRequest writes req on nc and reads its response frame (after the
// correlation id).
func rawRequest(t *testing.T, nc net.Conn, clientID string, req kmsg.Request, corr int32) []byte {
	t.Helper()
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID(clientID))
	if _, err := nc.Write(f.AppendRequest(nil, req, corr)); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(time.Minute))
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(nc, body); err != nil {
		t.Fatal(err)
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != corr {
		t.Fatalf("correlation id %d, want %d", got, corr)
	}
	body = body[4:]
	if req.IsFlexible() && req.Key() != int16(kmsg.ApiVersions) {
		body = body[1:] // empty header tags
	}
	return body
}

// TestProduceQuotaMutesConnection: over the quota, the produce response
// comes at once with the throttle time, the request's bytes are what the
// broker counted, and the connection's next request is read only after
// the throttle; a producer too old to throttle itself (v5) gets its
// response after the throttle instead.
func TestProduceQuotaMutesConnection(t *testing.T) {
	b, addr := testBroker(t, Options{})
	createTopic(t, newKgo(t, addr), "q", 1)
	const rate = 10000
	setQuota(t, addr, kadm.ClientQuotaEntity{{Type: "client-id", Name: nil}}, "producer_byte_rate", rate)
	for _, version := range []int16{9, 5} {
		clientID := fmt.Sprintf("raw-v%d", version)
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		// About 1.2 windows' worth: a throttle of about two seconds.
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis = version, 1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "q"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = testBatch(strings.Repeat("x", 12*rate))
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		frameBytes := len(kmsg.NewRequestFormatter(kmsg.FormatterClientID(clientID)).AppendRequest(nil, req, 1)) - 4
		sent := time.Now()
		body := rawRequest(t, nc, clientID, req, 1)
		resp := kmsg.NewPtrProduceResponse()
		resp.Version = version
		if err := resp.ReadFrom(body); err != nil {
			t.Fatal(err)
		}
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatalf("v%d: produce error %d", version, code)
		}
		if resp.ThrottleMillis <= 0 {
			t.Fatalf("v%d: throttle %d ms after %d bytes over a %d B/s quota", version, resp.ThrottleMillis, frameBytes, rate)
		}
		throttle := time.Duration(resp.ThrottleMillis) * time.Millisecond
		// The sensor is the client id's (/clients/<default>), and it
		// counted the request as sent.
		key := quota.SensorKey{Key: quota.ProducerByteRate, Tags: quota.Tags{ClientID: clientID}}
		if got, _ := b.sensors.Recorded(key); int(got) != frameBytes {
			t.Fatalf("v%d: broker counted %v bytes, the request had %d", version, got, frameBytes)
		}
		if version == 5 {
			// Delayed rather than muted: the response came no sooner than
			// the throttle after the request went out.
			if waited := time.Since(sent); waited < throttle {
				t.Fatalf("v5 response after %v, before the %v throttle", waited, throttle)
			}
			continue
		}
		// Muted from when the broker handled the request, which was after
		// it was sent, for the throttle.
		mutedUntil := connOf(t, b, nc).mutedUntil.Load()
		if mutedUntil < sent.Add(throttle).UnixNano() {
			t.Fatalf("connection muted until %v, before the %v throttle from the request's sending ran out", time.Unix(0, mutedUntil), throttle)
		}
		// The next request is answered only once the mute is over.
		rawRequest(t, nc, clientID, kmsg.NewPtrApiVersionsRequest(), 2)
		if now := time.Now().UnixNano(); now < mutedUntil {
			t.Fatalf("request answered %v before the mute ended", time.Duration(mutedUntil-now))
		}
	}
}

// connOf returns the broker's side of the client connection nc.
func connOf(t *testing.T, b *Broker, nc net.Conn) *conn {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		if c.nc.RemoteAddr().String() == nc.LocalAddr().String() {
			return c
		}
	}
	t.Fatalf("no connection from %s", nc.LocalAddr())
	return nil
}

// TestFetchQuotaThrottles: a fetch within the quota is answered and
// counted; the next one over it is answered empty with the throttle time
// and not counted, as Kafka answers; and a response is bounded by what the
// quota allows over the window.
func TestFetchQuotaThrottles(t *testing.T) {
	b, addr := testBroker(t, Options{})
	prod := newKgo(t, addr, kgo.DefaultProduceTopic("q"), kgo.ProducerLinger(0))
	createTopic(t, prod, "q", 1)
	value := make([]byte, 4<<10)
	rand.Read(value)
	const records = 40
	for range records {
		if err := prod.ProduceSync(ctxT(t), &kgo.Record{Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	const rate = 4096
	setQuota(t, addr, kadm.ClientQuotaEntity{{Type: "client-id", Name: strp("reader")}}, "consumer_byte_rate", rate)
	hook := &throttleHook{}
	cl := newKgo(t, addr, kgo.ClientID("reader"), kgo.WithHooks(hook))
	fetch := func(offset int64, maxBytes int32) *kmsg.FetchResponse {
		t.Helper()
		resp, err := fetchReq("q", offset, 0, 1, maxBytes, maxBytes).RequestWith(ctxT(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// Half the window's worth: answered, not throttled.
	first := fetch(0, 5*rate)
	if first.ThrottleMillis != 0 || len(first.Topics) != 1 {
		t.Fatalf("first fetch: throttle %d, %d topics", first.ThrottleMillis, len(first.Topics))
	}
	got := first.Topics[0].Partitions[0].RecordBatches
	n, _ := batchCount(got)
	if n == 0 || len(got) > 5*rate {
		t.Fatalf("first fetch: %d batches in %d bytes, limit %d", n, len(got), 5*rate)
	}
	key := quota.SensorKey{Key: quota.ConsumerByteRate, Tags: quota.Tags{ClientID: "reader"}}
	counted, _ := b.sensors.Recorded(key)
	// The broker counts the response as it encodes it; the client's
	// re-encoding differs only in length prefixes.
	if size := len(first.AppendTo(nil)); math.Abs(counted-float64(size)) > 8 {
		t.Fatalf("broker counted %v bytes for a %d-byte response", counted, size)
	}
	// The rest would take the client past its quota: empty, throttled.
	second := fetch(int64(n), 10<<20)
	if second.ThrottleMillis <= 0 || len(second.Topics) != 0 {
		t.Fatalf("second fetch: throttle %d, %d topics; want a throttled empty response", second.ThrottleMillis, len(second.Topics))
	}
	if after, _ := b.sensors.Recorded(key); after != counted {
		t.Fatalf("the throttled fetch was counted: %v bytes, was %v", after, counted)
	}
	if count, _ := histogram(t, b.metrics.throttles.WithLabelValues(quotaFetch)); count != 1 {
		t.Fatalf("broker counted %d fetch throttles, want 1", count)
	}
	if seen := hook.seen(); len(seen) != 1 || seen[0] != time.Duration(second.ThrottleMillis)*time.Millisecond {
		t.Fatalf("client told of throttles %v, want [%dms]", seen, second.ThrottleMillis)
	}

	// Bounding: a fetch asking for everything gets the quota's window
	// (KIP-74: a first batch larger than that would still go whole).
	c := newConn(b, discardConn{}, Plaintext)
	c.cancel()
	out := c.fetch(fetchReq("q", 0, 0, 1, 10<<20, 10<<20), nil, &fetchQuota{maxBytes: quota.MaxBytesInWindow(rate)})
	defer out.release()
	var sent int64
	for _, s := range out.sections {
		sent += s.Len
	}
	if limit := quota.MaxBytesInWindow(rate); sent == 0 || sent > limit {
		t.Fatalf("bounded fetch sent %d bytes, the window allows %d", sent, limit)
	}
	if all := int64(records * len(value)); sent >= all {
		t.Fatalf("bounded fetch sent all %d bytes", all)
	}
}

// TestConnectionCreationRate: connections within their address's
// connection_creation_rate are served; over it, one is held unserved and
// closed, as Kafka's ConnectionQuotas do, and the throttle is counted.
func TestConnectionCreationRate(t *testing.T) {
	b, addr := testBroker(t, Options{})
	alter := func(entity []quota.EntityPart, op quota.Op) {
		t.Helper()
		res, err := b.quotas.Alter([]quota.Alteration{{Entity: entity, Ops: []quota.Op{op}}}, false)
		if err != nil || res[0] != nil {
			t.Fatalf("alter: %v %v", res, err)
		}
	}
	serve := func() error {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		var f kmsg.RequestFormatter
		if _, err := nc.Write(f.AppendRequest(nil, kmsg.NewPtrApiVersionsRequest(), 1)); err != nil {
			return err
		}
		nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		var size [4]byte
		_, err = io.ReadFull(nc, size[:])
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("connection neither served nor closed")
		}
		return err
	}
	// One a second by default: the window (ten seconds at least) lets ten
	// through whatever the time they take.
	alter([]quota.EntityPart{{Type: quota.IP}}, quota.Op{Key: quota.ConnectionCreationRate, Value: 1})
	for i := range 10 {
		if err := serve(); err != nil {
			t.Fatalf("connection %d within the rate: %v", i, err)
		}
	}
	// None for this address: the next is closed unserved.
	alter([]quota.EntityPart{{Type: quota.IP, Name: strp("127.0.0.1")}}, quota.Op{Key: quota.ConnectionCreationRate, Value: 0})
	if err := serve(); err == nil {
		t.Fatal("a connection over the address's rate was served")
	}
	if count, _ := histogram(t, b.metrics.throttles.WithLabelValues(quotaConnection)); count != 1 {
		t.Fatalf("%d connection throttles counted, want 1", count)
	}
	// Without the quotas, connections are served again.
	alter([]quota.EntityPart{{Type: quota.IP, Name: strp("127.0.0.1")}}, quota.Op{Key: quota.ConnectionCreationRate, Remove: true})
	alter([]quota.EntityPart{{Type: quota.IP}}, quota.Op{Key: quota.ConnectionCreationRate, Remove: true})
	if err := serve(); err != nil {
		t.Fatalf("after removing the quotas: %v", err)
	}
}

// TestRequestPercentageThrottles: over request_percentage every request
// is throttled by at most one sample (a zero quota makes any time spent
// over it), the response says so and the connection is muted; a response
// version whose client does not throttle itself is delayed instead; a
// client without the quota is not throttled.
func TestRequestPercentageThrottles(t *testing.T) {
	b, addr := testBroker(t, Options{})
	res, err := b.quotas.Alter([]quota.Alteration{{Entity: []quota.EntityPart{{Type: quota.ClientID, Name: strp("busy")}},
		Ops: []quota.Op{{Key: quota.RequestPercentage, Value: 0}}}}, false)
	if err != nil || res[0] != nil {
		t.Fatalf("alter: %v %v", res, err)
	}
	dial := func() net.Conn {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return nc
	}
	metadata := func(nc net.Conn, clientID string, version int16, corr int32) *kmsg.MetadataResponse {
		t.Helper()
		req := kmsg.NewPtrMetadataRequest()
		req.Version = version
		resp := kmsg.NewPtrMetadataResponse()
		resp.Version = version
		if err := resp.ReadFrom(rawRequest(t, nc, clientID, req, corr)); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	nc := dial()
	sent := time.Now()
	if resp := metadata(nc, "busy", 9, 1); resp.ThrottleMillis != int32(quota.WindowSize.Milliseconds()) {
		t.Fatalf("throttle %d ms, want the %v bound", resp.ThrottleMillis, quota.WindowSize)
	}
	if mutedUntil := connOf(t, b, nc).mutedUntil.Load(); mutedUntil < sent.Add(quota.WindowSize).UnixNano() {
		t.Fatalf("muted until %v, before the throttle from the request's sending ran out", time.Unix(0, mutedUntil))
	}
	// Metadata v4 has a throttle field its clients do not act on: the
	// response waits out the throttle.
	old := dial()
	sent = time.Now()
	if resp := metadata(old, "busy", 4, 1); resp.ThrottleMillis <= 0 {
		t.Fatalf("v4 throttle %d", resp.ThrottleMillis)
	}
	if waited := time.Since(sent); waited < quota.WindowSize {
		t.Fatalf("v4 response after %v, before the %v throttle", waited, quota.WindowSize)
	}
	if resp := metadata(dial(), "idle", 9, 1); resp.ThrottleMillis != 0 {
		t.Fatalf("client without a quota throttled %d ms", resp.ThrottleMillis)
	}
	if count, _ := histogram(t, b.metrics.throttles.WithLabelValues(quotaRequest)); count != 2 {
		t.Fatalf("%d request throttles counted, want 2", count)
	}
}
