package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestCreateTopicsValidation(t *testing.T) {
	_, addr := testBroker(t, Options{})
	cl := newKgo(t, addr)
	createTopic(t, cl, "exists", 1)
	str := kmsg.StringPtr
	cases := []struct {
		name    string
		topic   string
		parts   int32
		rf      int16
		configs map[string]*string
		code    int16
		msg     string
	}{
		{"ok", "fresh", 4, 1, nil, 0, ""},
		{"default partitions and factor", "defaults", -1, -1, nil, 0, ""},
		{"replication factor 3", "rf3", 1, 3, nil, kerr.InvalidReplicationFactor.Code, "external Kafka cluster"},
		{"already exists", "exists", 1, 1, nil, kerr.TopicAlreadyExists.Code, "already exists"},
		{"bad name", "a/b", 1, 1, nil, kerr.InvalidTopicException.Code, "letters, digits"},
		{"dot name", "..", 1, 1, nil, kerr.InvalidTopicException.Code, "not allowed"},
		{"zero partitions", "zero", 0, 1, nil, kerr.InvalidPartitions.Code, "use 1 to"},
		{"unknown config", "cfg1", 1, 1, map[string]*string{"foo.bar": str("1")}, kerr.InvalidConfig.Code, "not supported"},
		{"unknown cleanup policy", "cfg2", 1, 1, map[string]*string{"cleanup.policy": str("compact,forever")}, kerr.InvalidConfig.Code, "not a cleanup policy"},
		{"bad retention", "cfg3", 1, 1, map[string]*string{"retention.ms": str("soon")}, kerr.InvalidConfig.Code, "integer"},
		{"good config", "cfg4", 1, 1, map[string]*string{"retention.ms": str("60000")}, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := kmsg.NewPtrCreateTopicsRequest()
			rt := kmsg.NewCreateTopicsRequestTopic()
			rt.Topic, rt.NumPartitions, rt.ReplicationFactor = c.topic, c.parts, c.rf
			for k, v := range c.configs {
				rc := kmsg.NewCreateTopicsRequestTopicConfig()
				rc.Name, rc.Value = k, v
				rt.Configs = append(rt.Configs, rc)
			}
			req.Topics = append(req.Topics, rt)
			resp, err := req.RequestWith(ctxT(t), cl)
			if err != nil {
				t.Fatal(err)
			}
			got := resp.Topics[0]
			if got.ErrorCode != c.code {
				t.Fatalf("error code %d, want %d (%v)", got.ErrorCode, c.code, got.ErrorMessage)
			}
			if c.msg != "" && (got.ErrorMessage == nil || !strings.Contains(*got.ErrorMessage, c.msg)) {
				t.Fatalf("message %v does not say %q", got.ErrorMessage, c.msg)
			}
		})
	}
}

func TestDeleteTopicRemovesData(t *testing.T) {
	b, addr := testBroker(t, Options{})
	cl := newKgo(t, addr, kgo.DisableIdempotentWrite())
	createTopic(t, cl, "doomed", 2)
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "doomed", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.TopicNames = []string{"doomed", "never-was"}
	resp, err := req.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Topics[0].ErrorCode != 0 || resp.Topics[1].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("delete codes %d, %d", resp.Topics[0].ErrorCode, resp.Topics[1].ErrorCode)
	}
	if _, err := os.Stat(filepath.Join(b.Dir(), "topics", "doomed")); !os.IsNotExist(err) {
		t.Fatalf("topic directory still there: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(b.Dir(), "trash")); len(ents) != 0 {
		t.Fatalf("trash not emptied: %v", ents)
	}
	md, err := topicMetadataReq(t, cl, "doomed")
	if err != nil || md.Topics[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("metadata after delete: %v %v", md, err)
	}
	// The name can be used again, from offset 0.
	createTopic(t, cl, "doomed", 1)
	fresh := newKgo(t, addr) // cl's metadata cache still says the topic is gone
	if off := listOffset(t, fresh, "doomed", 0, -1); off != 0 {
		t.Fatalf("recreated topic starts at %d", off)
	}
}

func topicMetadataReq(t *testing.T, cl *kgo.Client, topics ...string) (*kmsg.MetadataResponse, error) {
	req := kmsg.NewPtrMetadataRequest()
	for _, n := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(n)
		req.Topics = append(req.Topics, rt)
	}
	return req.RequestWith(ctxT(t), cl)
}

func TestDescribeConfigs(t *testing.T) {
	_, addr := testBroker(t, Options{})
	cl := newKgo(t, addr)
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "configured", 1, 1
	rc := kmsg.NewCreateTopicsRequestTopicConfig()
	rc.Name, rc.Value = "retention.ms", kmsg.StringPtr("3600000")
	rt.Configs = append(rt.Configs, rc)
	req.Topics = append(req.Topics, rt)
	if _, err := req.RequestWith(ctxT(t), cl); err != nil {
		t.Fatal(err)
	}
	dreq := kmsg.NewPtrDescribeConfigsRequest()
	for _, name := range []string{"configured", "missing"} {
		r := kmsg.NewDescribeConfigsRequestResource()
		r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, name
		dreq.Resources = append(dreq.Resources, r)
	}
	resp, err := dreq.RequestWith(ctxT(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]kmsg.DescribeConfigsResponseResourceConfig{}
	for _, c := range resp.Resources[0].Configs {
		got[c.Name] = c
	}
	if c := got["retention.ms"]; c.Value == nil || *c.Value != "3600000" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("retention.ms: %+v", c)
	}
	if c := got["retention.bytes"]; c.Value == nil || *c.Value != "-1" || c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("retention.bytes: %+v", c)
	}
	if resp.Resources[1].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("missing topic: code %d", resp.Resources[1].ErrorCode)
	}
}

func TestListOffsetsByTimestamp(t *testing.T) {
	_, addr := testBroker(t, Options{})
	cl := newKgo(t, addr, kgo.DisableIdempotentWrite())
	createTopic(t, cl, "timed", 1)
	base := time.UnixMilli(1_700_000_000_000)
	for i := range 10 {
		r := &kgo.Record{Topic: "timed", Value: []byte{byte(i)}, Timestamp: base.Add(time.Duration(i) * time.Second)}
		if err := cl.ProduceSync(ctxT(t), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		ts   int64
		want int64
	}{
		{-2, 0},
		{-1, 10},
		{base.UnixMilli(), 0},
		{base.Add(4500 * time.Millisecond).UnixMilli(), 5},
		{base.Add(9 * time.Second).UnixMilli(), 9},
		{base.Add(time.Hour).UnixMilli(), -1},
	}
	for _, c := range cases {
		if got := listOffset(t, cl, "timed", 0, c.ts); got != c.want {
			t.Errorf("timestamp %d: offset %d, want %d", c.ts, got, c.want)
		}
	}
}

func TestAutoCreateTopics(t *testing.T) {
	cases := []struct {
		auto bool
		want bool
	}{{false, false}, {true, true}}
	for _, c := range cases {
		b, addr := testBroker(t, Options{AutoCreateTopics: c.auto, DefaultPartitions: 3})
		cl := newKgo(t, addr, kgo.DisableIdempotentWrite(), kgo.AllowAutoTopicCreation(),
			kgo.RecordRetries(2), kgo.ProduceRequestTimeout(2*time.Second))
		err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "auto", Value: []byte("x")}).FirstErr()
		created := b.topics.get("auto") != nil
		if created != c.want || (err == nil) != c.want {
			t.Fatalf("auto-create %v: created %v, produce error %v", c.auto, created, err)
		}
		if created && len(b.topics.get("auto").parts) != 3 {
			t.Fatalf("auto-created %d partitions", len(b.topics.get("auto").parts))
		}
	}
}

func TestTLSListener(t *testing.T) {
	b, _ := testBroker(t, Options{})
	cert := selfSigned(t)
	l, err := b.Listen("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	cl := newKgo(t, l.Addr().String(), kgo.DialTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}),
		kgo.DisableIdempotentWrite(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"secure": {0: kgo.NewOffset().At(0)}}))
	createTopic(t, cl, "secure", 1)
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "secure", Value: []byte("over tls")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fs := cl.PollFetches(ctxT(t))
	if err := fs.Err0(); err != nil {
		t.Fatal(err)
	}
	if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != "over tls" {
		t.Fatalf("consumed %v over TLS", recs)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sluice test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}
