package kafka

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkatest"
	"github.com/sluicehq/sluice/sinks"
	"github.com/sluicehq/sluice/sinks/file"
	"github.com/sluicehq/sluice/sinks/file/filetest"
	"github.com/sluicehq/sluice/sinks/sinktest"
)

func newForwarding(t *testing.T, dir string, brokers []string) *Forwarding {
	t.Helper()
	// One part file per epoch: the suite reads output as visible at commit.
	inner, err := file.New(file.Config{Path: dir, Format: "raw", Roll: &file.RollConfig{PerEpoch: true}}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewForwarding(inner, Config{Brokers: brokers, Topic: "dead"})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// The file sink with a Kafka dead-letter topic is still a sink that passes
// the suite, dead letters included: they are in the topic once Commit
// returns.
func TestForwardingConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Harness {
		brokers := kfakeCluster(t)
		dir := t.TempDir()
		return sinktest.Harness{
			New:             func(t *testing.T) engine.Sink { return newForwarding(t, dir, brokers) },
			Read:            func(t *testing.T) []string { return filetest.Lines(t, dir) },
			ReadDeadLetters: func(t *testing.T) []string { return deadLetterValues(t, brokers) },
			Crash: func(t *testing.T, s engine.Sink) {
				if k := s.(*Forwarding).topic; k.cl != nil {
					k.cl.Close()
					k.cl = nil
				}
			},
		}
	})
}

// flakyOutbox fails the next ForgetDeadLetters, as a crash right after the
// forwarding transaction committed would leave things.
type flakyOutbox struct {
	sinks.Outbox
	failForget bool
}

func (o *flakyOutbox) ForgetDeadLetters(ctx context.Context, through uint64) error {
	if o.failForget {
		o.failForget = false
		return errors.New("injected: crash before forgetting")
	}
	return o.Outbox.ForgetDeadLetters(ctx, through)
}

func rejects(epoch uint64, n int) []engine.Rejected {
	out := make([]engine.Rejected, n)
	for i := range out {
		out[i] = engine.Rejected{Record: engine.Record{Topic: "in", Offset: int64(i), Value: []byte(strconv.Itoa(int(epoch)*100 + i))},
			Reason: "test", Plugin: "t"}
	}
	return out
}

// A dead letter committed in the sink reaches the topic exactly once
// whichever step of forwarding is interrupted: before the topic's
// transaction (Kafka unreachable), or after it but before the sink forgot
// the letters.
func TestForwardingInterrupted(t *testing.T) {
	brokers := kfakeCluster(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := func(e int64) engine.Positions { return engine.Positions{{Topic: "in"}: e} }

	// 1: the forwarder cannot reach Kafka after the sink committed.
	a := newForwarding(t, dir, brokers)
	if _, _, err := a.Open(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	a.WriteRejected(ctx, 1, rejects(1, 3))
	a.topic.cl.Close() // the connection is gone
	err := a.Commit(ctx, 1, p(1))
	if err == nil || !engine.IsRetryable(err) {
		t.Fatalf("Commit with Kafka gone = %v; want a retryable error", err)
	}
	a.Outbox.Close()

	// 2: a new instance forwards epoch 1 on Open; forgetting fails.
	b := newForwarding(t, dir, brokers)
	flaky := &flakyOutbox{Outbox: b.Outbox, failForget: true}
	b.Outbox = flaky
	if epoch, _, err := b.Open(ctx, "p"); err == nil || epoch != 0 {
		t.Fatalf("Open = %d, %v; want the injected error", epoch, err)
	}
	if got := sorted(kafkatest.Values(kafkatest.ReadCommitted(t, brokers, "dead"))); !slices.Equal(got, []string{"100", "101", "102"}) {
		t.Fatalf("dead letters after the first forward: %q", got)
	}
	b.Close()

	// 3: the next instance skips what the topic has, and forgets it.
	c := newForwarding(t, dir, brokers)
	if epoch, _, err := c.Open(ctx, "p"); err != nil || epoch != 1 {
		t.Fatalf("Open = %d, %v; want epoch 1", epoch, err)
	}
	c.WriteRejected(ctx, 2, rejects(2, 1))
	if err := c.Commit(ctx, 2, p(2)); err != nil {
		t.Fatal(err)
	}
	if got := sorted(kafkatest.Values(kafkatest.ReadCommitted(t, brokers, "dead"))); !slices.Equal(got, []string{"100", "101", "102", "200"}) {
		t.Fatalf("dead letters: %q", got)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "_dead-letters", "p", "*"))
	if len(left) != 0 {
		t.Fatalf("forwarded dead letters still kept by the sink: %v", left)
	}
	c.Close()
}

func sorted(s []string) []string { slices.Sort(s); return s }
