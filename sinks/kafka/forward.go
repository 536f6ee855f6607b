package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sinks"
)

// forwardedKey is the position under which the forwarder's checkpoint
// records the last sink epoch whose dead letters reached the topic.
var forwardedKey = engine.TopicPartition{Topic: "_sink-epoch", Partition: 0}

// forwarderSuffix turns a pipeline name into the name the forwarder's
// transactional id and checkpoint topic are derived from.
const forwarderSuffix = ".dead-letters"

// Forwarding gives a sink that keeps its dead letters (a sinks.Outbox: the
// file and postgres sinks) a Kafka dead-letter topic. The inner sink
// commits dead letters with their batch, so they are never lost or
// doubled there; after a commit that had any, and on Open, Forwarding
// moves them to the topic in Kafka transactions, each recording the last
// sink epoch forwarded, and then has the inner sink forget them. A crash
// in between is settled on the next Open: what the topic's checkpoint
// covers is skipped, the rest is sent again. Dead letters reach the topic
// shortly after their batch commits, never before.
type Forwarding struct {
	sinks.Outbox
	topic     *Sink  // writes the dead-letter topic; one of its epochs per forwarded sink epoch
	forwarded uint64 // the last sink epoch whose dead letters are in the topic
	pending   bool   // the staged epoch has dead letters
}

// NewForwarding wraps inner; cfg.Topic is the dead-letter topic, on the
// cluster cfg.Brokers reach.
func NewForwarding(inner sinks.Outbox, cfg Config) (*Forwarding, error) {
	if cfg.CheckpointTopic != "" || cfg.TransactionalID != "" {
		return nil, errors.New("kafka dead-letter forwarder: checkpoint topic and transactional id are derived from the pipeline name")
	}
	k, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return &Forwarding{Outbox: inner, topic: k}, nil
}

// Open opens the inner sink and the topic's transactional producer (which
// fences older instances), then forwards what an earlier run committed
// but did not forward.
func (f *Forwarding) Open(ctx context.Context, pipeline string) (uint64, engine.Positions, error) {
	f.pending = false
	epoch, at, err := f.Outbox.Open(ctx, pipeline)
	if err != nil {
		return 0, nil, err
	}
	_, fwd, err := f.topic.Open(ctx, pipeline+forwarderSuffix)
	if err != nil {
		return 0, nil, err
	}
	f.forwarded = uint64(fwd[forwardedKey])
	if err := f.forward(ctx); err != nil {
		return 0, nil, err
	}
	return epoch, at, nil
}

// WriteRejected stages dead letters in the inner sink.
func (f *Forwarding) WriteRejected(ctx context.Context, epoch uint64, rejected []engine.Rejected) error {
	f.pending = f.pending || len(rejected) > 0
	return f.Outbox.WriteRejected(ctx, epoch, rejected)
}

// Commit commits the inner sink, then forwards the epoch's dead letters.
// When forwarding fails the epoch stays committed (the error says so); the
// engine reopens, and Open forwards them.
func (f *Forwarding) Commit(ctx context.Context, epoch uint64, until engine.Positions) error {
	if err := f.Outbox.Commit(ctx, epoch, until); err != nil {
		return err
	}
	if !f.pending {
		return nil
	}
	f.pending = false
	if err := f.forward(ctx); err != nil {
		if errors.Is(err, engine.ErrFenced) {
			return err
		}
		return engine.Retryable(fmt.Errorf("epoch %d is committed, its dead letters are not in topic %s yet: %w", epoch, f.topic.cfg.Topic, err))
	}
	return nil
}

// Abort drops the staged epoch in the inner sink.
func (f *Forwarding) Abort(ctx context.Context, epoch uint64) error {
	f.pending = false
	return f.Outbox.Abort(ctx, epoch)
}

// Close closes both.
func (f *Forwarding) Close() error {
	return errors.Join(f.Outbox.Close(), f.topic.Close())
}

// forward sends every committed epoch's dead letters past f.forwarded,
// one transaction per epoch, then lets the inner sink forget them.
func (f *Forwarding) forward(ctx context.Context) error {
	start := f.forwarded
	for {
		epoch, letters, err := f.Outbox.CommittedDeadLetters(ctx, f.forwarded)
		if err != nil {
			return err
		}
		if epoch == 0 {
			break
		}
		next := f.topic.known.Epoch + 1
		if err := f.topic.Write(ctx, next, letters); err != nil {
			return err
		}
		if err := f.topic.Commit(ctx, next, engine.Positions{forwardedKey: int64(epoch)}); err != nil {
			return err
		}
		f.forwarded = epoch
	}
	if f.forwarded == start {
		return nil
	}
	return f.Outbox.ForgetDeadLetters(ctx, f.forwarded)
}
