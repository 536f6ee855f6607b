package kafka_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/testpki"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/sources/kafka"
)

func TestDirectOverTLSWithTestCA(t *testing.T) {
	pki := testpki.New(t, t.TempDir())
	caFile, cert, pool := pki.CA, pki.Server, pki.Pool
	b, err := broker.Open(t.TempDir(), broker.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	l, err := b.Listen("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DialTLSConfig(&tls.Config{RootCAs: pool}),
		kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "events", 1, 1
	req.Topics = append(req.Topics, rt)
	if _, err := req.RequestWith(context.Background(), cl); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("secret")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	read := func(tlsCfg *pipelines.TLS) ([]engine.Record, error) {
		src, err := kafka.NewDirect(kafka.DirectConfig{Conn: kafka.Connection{Brokers: []string{addr}, TLS: tlsCfg},
			Topics: []string{"events"}, Start: "earliest", Pipeline: "p", Logger: quiet})
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := src.Open(ctx, nil); err != nil {
			return nil, err
		}
		defer src.Close()
		recs, _, err := src.Next(ctx, engine.Limits{})
		return recs, err
	}
	recs, err := read(&pipelines.TLS{CA: caFile})
	if err != nil || len(recs) != 1 || string(recs[0].Value) != "secret" {
		t.Fatalf("TLS with the test CA: %d records, err %v", len(recs), err)
	}
	if _, err := read(&pipelines.TLS{}); err == nil {
		t.Fatal("a client that does not trust the test CA must fail")
	}
	if _, err := read(nil); err == nil {
		t.Fatal("a plaintext client on the TLS listener must fail")
	}
	recs, err = receiveOne(t, kafka.Connection{Brokers: []string{addr}, TLS: &pipelines.TLS{CA: caFile}}, "tls")
	if err != nil || len(recs) != 1 || string(recs[0].Value) != "secret" {
		t.Fatalf("receiver, TLS with the test CA: %d records, err %v", len(recs), err)
	}
	if _, err := receiveOne(t, kafka.Connection{Brokers: []string{addr}, TLS: &pipelines.TLS{}}, "untrusted"); err == nil {
		t.Fatal("a receiver that does not trust the test CA must fail")
	}
}
