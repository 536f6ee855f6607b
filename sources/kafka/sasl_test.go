package kafka_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/sources/kafka"
)

// TestSASLAgainstKfake reads a SASL-protected cluster with each mechanism;
// wrong credentials fail.
func TestSASLAgainstKfake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plainuser", "plainpass"),
		kfake.Superuser("SCRAM-SHA-256", "scram256", "pass256"),
		kfake.Superuser("SCRAM-SHA-512", "scram512", "pass512"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("events"),
		kgo.SASL(scram.Auth{User: "scram256", Pass: "pass256"}.AsSha256Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("authenticated")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	read := func(s pipelines.SASL) error {
		src, err := kafka.NewDirect(kafka.DirectConfig{Conn: kafka.Connection{Brokers: brokers, SASL: &s},
			Topics: []string{"events"}, Start: "earliest", Pipeline: "p", Logger: quiet})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := src.Open(ctx, nil); err != nil {
			return err
		}
		defer src.Close()
		recs, _, err := src.Next(ctx, engine.Limits{})
		if err == nil && (len(recs) != 1 || string(recs[0].Value) != "authenticated") {
			t.Fatalf("%s: read %d records", s.Mechanism, len(recs))
		}
		return err
	}
	receive := func(s pipelines.SASL) error {
		// A group of its own per read: a group that read the record
		// already would start after it.
		recs, err := receiveOne(t, kafka.Connection{Brokers: brokers, SASL: &s}, s.Mechanism+"-"+s.Password)
		if err == nil && (len(recs) != 1 || string(recs[0].Value) != "authenticated") {
			t.Fatalf("receiver, %s: read %d records", s.Mechanism, len(recs))
		}
		return err
	}
	for _, s := range []pipelines.SASL{
		{Mechanism: "plain", Username: "plainuser", Password: "plainpass"},
		{Mechanism: "scram-sha-256", Username: "scram256", Password: "pass256"},
		{Mechanism: "scram-sha-512", Username: "scram512", Password: "pass512"},
	} {
		if err := read(s); err != nil {
			t.Errorf("%s: %v", s.Mechanism, err)
		}
		if err := receive(s); err != nil {
			t.Errorf("receiver, %s: %v", s.Mechanism, err)
		}
	}
	wrong := pipelines.SASL{Mechanism: "scram-sha-256", Username: "scram256", Password: "wrong"}
	if err := read(wrong); err == nil {
		t.Error("wrong password must fail")
	}
	if err := receive(wrong); err == nil {
		t.Error("receiver: wrong password must fail")
	}
}

// receiveOne opens a receiver-mode source of group on topic "events"
// through conn and returns its first non-empty batch.
func receiveOne(t *testing.T, conn kafka.Connection, group string) ([]engine.Record, error) {
	t.Helper()
	src, err := kafka.NewReceiver(kafka.ReceiverConfig{Conn: conn, Topics: []string{"events"}, Start: "earliest",
		Group: group, BlockInterval: 50 * time.Millisecond, WALDir: filepath.Join(t.TempDir(), "wal"),
		Delivery: engine.ExactlyOnce, Pipeline: "p", Logger: quiet})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := src.Open(ctx, nil); err != nil {
		return nil, err
	}
	defer src.Close()
	for {
		recs, _, err := src.Next(ctx, engine.Limits{Wait: time.Second})
		if err != nil || len(recs) > 0 {
			return recs, err
		}
	}
}
