package state

import (
	"context"
	"os"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkatest"
)

// TestDelete removes a pipeline's local stores and its changelog topic,
// and a second Delete finds nothing to remove and succeeds.
func TestDelete(t *testing.T) {
	brokers := kafkatest.Builtin(t, "unused", 1)
	ctx := context.Background()
	kafka := []kgo.Opt{kgo.SeedBrokers(brokers...)}
	data := t.TempDir()
	d, err := Open(ctx, Options{DataDir: data, Pipeline: "gone", Logger: quietLogger(), Kafka: kafka})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Restore(ctx, []engine.Task{0}, func(engine.Task) uint64 { return 0 }); err != nil {
		t.Fatal(err)
	}
	bctx, b := d.Begin(ctx)
	if err := ViewFrom(bctx).Put(0, "ns", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := b.Prepare(ctx, func(engine.Task) uint64 { return 1 }); err != nil {
		t.Fatal(err)
	}
	b.Committed()
	d.Close()

	cl, err := kgo.NewClient(kafka...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	exists := func() bool {
		cl.PurgeTopicsFromClient(ChangelogTopic("gone"))
		td, err := kadm.NewClient(cl).ListTopics(ctx, ChangelogTopic("gone"))
		if err != nil {
			t.Fatal(err)
		}
		return td.Has(ChangelogTopic("gone")) && td[ChangelogTopic("gone")].Err == nil
	}
	if !exists() {
		t.Fatal("no changelog topic before Delete")
	}
	for range 2 {
		if err := Delete(ctx, data, "gone", kafka); err != nil {
			t.Fatal(err)
		}
	}
	if exists() {
		t.Fatal("changelog topic still there after Delete")
	}
	if _, err := os.Stat(Dir(data, "gone")); !os.IsNotExist(err) {
		t.Fatalf("local state still there after Delete: %v", err)
	}
}
