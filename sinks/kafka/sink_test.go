package kafka

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkatest"
	"github.com/sluicehq/sluice/sinks"
	"github.com/sluicehq/sluice/sinks/sinktest"
)

// cluster starts an independent Kafka implementation (franz-go's kfake)
// for one test.
func kfakeCluster(t testing.TB) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// conformance runs the sink suite against the brokers newBrokers starts.
func conformance(t *testing.T, newBrokers func(t testing.TB) []string) {
	sinktest.Run(t, func(t *testing.T) sinktest.Harness {
		brokers := newBrokers(t)
		cfg := Config{Brokers: brokers, Topic: "out", DeadLetterTopic: "dead"}
		return sinktest.Harness{
			New: func(t *testing.T) engine.Sink {
				s, err := New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			Read: func(t *testing.T) []string {
				return kafkatest.Values(kafkatest.ReadCommitted(t, brokers, "out"))
			},
			ReadDeadLetters: func(t *testing.T) []string { return deadLetterValues(t, brokers) },
			// A killed process leaves its transaction open: drop the
			// connection without ending it.
			Crash: func(t *testing.T, s engine.Sink) {
				if k := s.(*Sink); k.cl != nil {
					k.cl.Close()
					k.cl = nil
				}
			},
		}
	})
}

func TestConformanceKfake(t *testing.T) { conformance(t, kfakeCluster) }

func TestConformanceBuiltin(t *testing.T) { conformance(t, builtinBroker) }

// A checkpoint topic someone created with several partitions is refused:
// the sink reads partition 0 only.
func TestCheckpointTopicNeedsOnePartition(t *testing.T) {
	brokers := builtinBroker(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, nil, "ckpt"); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Brokers: brokers, Topic: "out", CheckpointTopic: "ckpt"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, _, err = s.Open(ctx, "p")
	if err == nil || !strings.Contains(err.Error(), "checkpoint topic ckpt has 3 partitions and the sink needs exactly one") {
		t.Fatalf("Open = %v; want the partition count refused", err)
	}
}

// Pipelines may share one checkpoint topic: Open finds its own last
// checkpoint behind many of another pipeline's, widening its read window.
func TestSharedCheckpointTopic(t *testing.T) {
	brokers := builtinBroker(t)
	ctx := context.Background()
	open := func(pipeline string) (*Sink, uint64, engine.Positions) {
		s, err := New(Config{Brokers: brokers, Topic: "out-" + pipeline, CheckpointTopic: "shared"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		e, at, err := s.Open(ctx, pipeline)
		if err != nil {
			t.Fatal(err)
		}
		return s, e, at
	}
	at := func(n int64) engine.Positions { return engine.Positions{{Topic: "in"}: n} }
	b, _, _ := open("beta")
	if err := b.Commit(ctx, 1, at(7)); err != nil {
		t.Fatal(err)
	}
	a, _, _ := open("alpha")
	for e := uint64(1); e <= 3*firstWindow; e++ { // two offsets each: checkpoint and marker
		if err := a.Commit(ctx, e, at(int64(e))); err != nil {
			t.Fatal(err)
		}
	}
	if _, e, p := open("beta"); e != 1 || !p.Equal(at(7)) {
		t.Fatalf("beta reopened at %d, %v; want 1, %v", e, p, at(7))
	}
	if _, e, p := open("alpha"); e != 3*firstWindow || !p.Equal(at(3*firstWindow)) {
		t.Fatalf("alpha reopened at %d, %v", e, p)
	}
}

// A checkpoint record whose transaction aborted is never taken by Open,
// even when it is the last record of the partition before the marker.
func TestAbortedCheckpointIsNotTaken(t *testing.T) {
	for name, start := range map[string]func(testing.TB) []string{"builtin": builtinBroker, "kfake": kfakeCluster} {
		t.Run(name, func(t *testing.T) {
			brokers := start(t)
			ctx := context.Background()
			s, err := New(Config{Brokers: brokers, Topic: "out"})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, _, err := s.Open(ctx, "p"); err != nil {
				t.Fatal(err)
			}
			if err := s.Commit(ctx, 1, engine.Positions{{Topic: "in"}: 1}); err != nil {
				t.Fatal(err)
			}
			// Epoch 2 gets as far as its checkpoint record, then aborts.
			if err := s.begin(ctx, 2); err != nil {
				t.Fatal(err)
			}
			value, _ := checkpoint{Pipeline: "p", Epoch: 2, Positions: engine.Positions{{Topic: "in"}: 2}}.marshal()
			s.cl.Produce(ctx, &kgo.Record{Topic: s.cfg.checkpointTopic("p"), Key: []byte("p"), Value: value}, s.promise)
			if err := s.cl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.Abort(ctx, 2); err != nil {
				t.Fatal(err)
			}
			r, err := New(Config{Brokers: brokers, Topic: "out"})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if e, at, err := r.Open(ctx, "p"); err != nil || e != 1 || at[engine.TopicPartition{Topic: "in"}] != 1 {
				t.Fatalf("Open = %d, %v, %v; want epoch 1 (epoch 2's checkpoint aborted)", e, at, err)
			}
		})
	}
}

// deadLetterValues reads topic "dead" and checks every record carries the
// reason, plugin and source position headers.
func deadLetterValues(t *testing.T, brokers []string) []string {
	t.Helper()
	recs := kafkatest.ReadCommitted(t, brokers, "dead")
	for _, r := range recs {
		have := map[string]string{}
		for _, h := range r.Headers {
			have[h.Key] = string(h.Value)
		}
		for _, k := range []string{sinks.HeaderReason, sinks.HeaderPlugin, sinks.HeaderTopic, sinks.HeaderPartition, sinks.HeaderOffset} {
			if _, ok := have[k]; !ok {
				t.Fatalf("dead letter %q lacks header %s: %v", r.Value, k, have)
			}
		}
		if have[sinks.HeaderReason] != "test rejects "+string(r.Value) || have[sinks.HeaderTopic] != "in" {
			t.Fatalf("dead letter %q has headers %v; want the suite's reason and source topic", r.Value, have)
		}
	}
	return kafkatest.Values(recs)
}

// The checkpoint topic is compacted on the built-in broker: one made
// before the broker could compact (cleanup.policy=delete) is altered when
// the sink opens, and after many epochs and a clean it holds a few records
// while Open still finds the last checkpoint.
func TestCheckpointTopicCompactedOnBuiltin(t *testing.T) {
	b, err := broker.Open(t.TempDir(), broker.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.Listen("127.0.0.1:0", nil); err != nil {
		t.Fatal(err)
	}
	brokers := []string{b.Addr()}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": ptr("delete"), "segment.bytes": ptr("1024")}, "ckpt"); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	open := func() *Sink {
		s, err := New(Config{Brokers: brokers, Topic: "out", CheckpointTopic: "ckpt", Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	e, _, err := s.Open(ctx, "p")
	if err != nil || e != 0 {
		t.Fatalf("Open = %d, %v", e, err)
	}
	policy := func(topic string) string {
		rc, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range rc[0].Configs {
			if c.Key == "cleanup.policy" {
				return c.MaybeValue()
			}
		}
		return ""
	}
	if got := policy("ckpt"); got != "compact" || !strings.Contains(logs.String(), "made the checkpoint topic compacted") {
		t.Fatalf("checkpoint topic cleanup.policy %q after Open; log:\n%s", got, logs.String())
	}
	const epochs = 200
	for e := uint64(1); e <= epochs; e++ {
		rec := engine.Record{Topic: "in", Offset: int64(e), Key: []byte("k"), Value: []byte("v")}
		if err := s.Write(ctx, e, []engine.Record{rec}); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, e, engine.Positions{{Topic: "in"}: int64(e)}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if err := b.CleanNow(ctx); err != nil {
		t.Fatal(err)
	}
	// What is left: the latest checkpoint and the markers of the epochs
	// (kept delete.retention.ms after their first clean), plus the
	// segment being written.
	count := func() (recs, markers int) {
		rcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"ckpt": {0: kgo.NewOffset().AtStart()}}),
			kgo.KeepControlRecords(), kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
		if err != nil {
			t.Fatal(err)
		}
		defer rcl.Close()
		for done := false; !done; {
			fs := rcl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				if r.Attrs.IsControl() {
					markers++
				} else {
					recs++
				}
				done = done || r.Offset == 2*epochs-1
			})
		}
		return recs, markers
	}
	if recs, _ := count(); recs > 10 {
		t.Fatalf("%d checkpoint records left of %d after a clean", recs, epochs)
	}
	// Markers whose data is gone go once delete.retention.ms has passed
	// since their first clean.
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "delete.retention.ms", Value: ptr("0")}}, "ckpt"); err != nil {
		t.Fatal(err)
	}
	if err := b.CleanNow(ctx); err != nil {
		t.Fatal(err)
	}
	recs, markers := count()
	if recs > 10 || markers > 20 {
		t.Fatalf("%d checkpoint records and %d markers left of %d each after delete.retention.ms", recs, markers, epochs)
	}
	s = open()
	defer s.Close()
	if e, at, err := s.Open(ctx, "p"); err != nil || e != epochs || at[engine.TopicPartition{Topic: "in"}] != epochs {
		t.Fatalf("Open after the clean = %d, %v, %v; want epoch %d", e, at, err, epochs)
	}
	t.Logf("%d checkpoint records and %d markers left of %d each", recs, markers, epochs)
}
