package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkatest"
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
			ReadDeadLetters: func(t *testing.T) []string {
				return kafkatest.Values(kafkatest.ReadCommitted(t, brokers, "dead"))
			},
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
