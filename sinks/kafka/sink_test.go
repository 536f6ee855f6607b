package kafka

import (
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

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
