package state

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkatest"
)

// TestRestoreFromCompactedChangelog: the built-in broker compacts the
// changelog (1 KiB segments, tombstones dropped at once) after 40 epochs
// of updates and deletions and an abandoned 41st; a process with an empty
// data directory restores exactly the state of epoch 40 from what is left.
func TestRestoreFromCompactedChangelog(t *testing.T) {
	b, err := broker.Open(t.TempDir(), broker.Options{Logger: quietLogger(), SegmentBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	l, err := b.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	go b.Serve(l)
	addrs := []string{l.Addr().String()}
	kafka := []kgo.Opt{kgo.SeedBrokers(addrs...)}
	ctx := context.Background()
	tasks := []engine.Task{0}

	d, err := Open(ctx, Options{DataDir: t.TempDir(), Pipeline: "compacted", Logger: quietLogger(), Kafka: kafka})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Restore(ctx, tasks, func(engine.Task) uint64 { return 0 }); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kafka...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topic := ChangelogTopic("compacted")
	if _, err := kadm.NewClient(cl).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "delete.retention.ms", Value: ptr("0")}}, topic); err != nil {
		t.Fatal(err)
	}

	model := map[string]string{}
	batch := func(e uint64, commit bool, puts map[string]string) {
		t.Helper()
		bctx, sb := d.Begin(ctx)
		v := ViewFrom(bctx)
		for k, val := range puts {
			if val == "" {
				v.Delete(0, "ns", []byte(k))
			} else {
				v.Put(0, "ns", []byte(k), []byte(val))
			}
		}
		if err := sb.Prepare(ctx, func(engine.Task) uint64 { return e }); err != nil {
			t.Fatal(err)
		}
		if commit {
			for k, val := range puts {
				if val == "" {
					delete(model, k)
				} else {
					model[k] = val
				}
			}
			sb.Committed()
		}
	}
	for e := uint64(1); e <= 40; e++ {
		puts := map[string]string{fmt.Sprint("k", e%10): fmt.Sprint("v", e), fmt.Sprint("big", e%3): string(make([]byte, 300))}
		if e%4 == 0 {
			puts[fmt.Sprint("k", (e+3)%10)] = ""
		}
		batch(e, true, puts)
	}
	batch(41, false, map[string]string{"k1": "lost", "k2": "", "new": "lost"})
	// A crash: nothing more is written.
	d.cl.cl.Flush(ctx)
	d.cl.close()
	for _, s := range d.stores {
		s.close()
	}

	before := len(kafkatest.ReadCommitted(t, addrs, topic))
	if err := b.CleanNow(ctx); err != nil {
		t.Fatal(err)
	}
	after := len(kafkatest.ReadCommitted(t, addrs, topic))
	t.Logf("%d records before cleaning, %d after", before, after)
	if after >= before {
		t.Fatalf("the changelog holds %d records after cleaning, %d before: nothing was compacted", after, before)
	}

	d2, err := Open(ctx, Options{DataDir: t.TempDir(), Pipeline: "compacted", Logger: quietLogger(), Kafka: kafka})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if err := d2.Restore(ctx, tasks, func(engine.Task) uint64 { return 40 }); err != nil {
		t.Fatal(err)
	}
	bctx, _ := d2.Begin(ctx)
	got := map[string]string{}
	if err := ViewFrom(bctx).Scan(0, "ns", nil, nil, func(k, v []byte) bool {
		got[string(k)] = string(v)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, model) {
		t.Fatalf("restored from the compacted changelog (%d of %d records left):\n got %q\nwant %q", after, before, got, model)
	}
}
