package kafka

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/engine"
)

const (
	// storedWait bounds how long ending a transaction waits for the client
	// to store the partitions of a topic it produced to for the first
	// time. It stores them right after handing them their first records,
	// so the wait is normally nothing; one that never ends is a stall to
	// retry, not a transaction to end blind.
	storedWait = 10 * time.Second
	// storedPoll is how often that wait looks again.
	storedPoll = time.Millisecond
)

// noteTopic records that this client produced to topic; awaitStored then
// checks the topic once.
func (s *Sink) noteTopic(topic string) {
	if s.stored[topic] {
		return
	}
	if s.stored == nil {
		s.stored = map[string]bool{}
	}
	if _, noted := s.stored[topic]; !noted {
		s.stored[topic] = false
	}
}

// awaitStored waits until the client has stored the partitions of every
// topic this sink produced to, before a transaction ends. franz-go v1.22
// hands a topic's first records to its partitions before it stores the
// partitions where EndTransaction looks for them. A transaction that ends
// in between is silently aborted instead of committed when none of the
// partitions it wrote to is stored ("no produce succeeded"), and the epoch
// bump of a KIP-890 broker does not reset the sequence numbers of the
// unstored ones, so their next batch fails with OUT_OF_ORDER_SEQUENCE_NUMBER.
// PartitionLeader reads the same stored view. A topic seen stored stays so.
func (s *Sink) awaitStored(ctx context.Context) error {
	deadline := time.Now().Add(storedWait)
	for topic, ok := range s.stored {
		for !ok {
			// Unstored, the topic has no partitions: -1 and no error. A
			// stored partition 0 without a leader says why in err; it is
			// stored all the same, and waiting for a leader is not ours.
			if leader, _, err := s.cl.PartitionLeader(topic, 0); leader >= 0 || err != nil {
				s.stored[topic], ok = true, true
				continue
			}
			if time.Now().After(deadline) {
				return engine.Retryable(fmt.Errorf("kafka sink: the client has not stored the partitions of topic %s within %v of producing to it; the epoch is retried", topic, storedWait))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(storedPoll):
			}
		}
	}
	return nil
}
