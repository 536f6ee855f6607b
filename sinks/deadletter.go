package sinks

import (
	"context"
	"strconv"

	"github.com/sluicehq/sluice/engine"
)

// Header keys a dead letter carries on top of the rejected record's own
// headers, so the record can be traced back and replayed.
const (
	HeaderReason    = "sluice.reason"    // why the transform refused it
	HeaderPlugin    = "sluice.plugin"    // which transform step refused it
	HeaderTopic     = "sluice.topic"     // source position of the input record
	HeaderPartition = "sluice.partition" //
	HeaderOffset    = "sluice.offset"    //
)

// DeadLetter returns the record to write for r: r.Record with the reason,
// plugin and source position appended as headers. The result shares Key and
// Value with r.Record; the Headers slice is new.
func DeadLetter(r engine.Rejected) engine.Record {
	rec := r.Record
	h := make([]engine.Header, 0, len(rec.Headers)+5)
	h = append(h, rec.Headers...)
	h = append(h,
		engine.Header{Key: HeaderReason, Value: []byte(r.Reason)},
		engine.Header{Key: HeaderPlugin, Value: []byte(r.Plugin)},
		engine.Header{Key: HeaderTopic, Value: []byte(rec.Topic)},
		engine.Header{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(rec.Partition), 10)},
		engine.Header{Key: HeaderOffset, Value: strconv.AppendInt(nil, rec.Offset, 10)},
	)
	rec.Headers = h
	return rec
}

// Outbox is a sink that keeps the dead letters it committed where it can
// read them back. They become durable in the same commit as the batch's
// output; a forwarder then moves them to another destination (a Kafka
// topic) exactly once, and has the sink forget them.
type Outbox interface {
	engine.Sink
	engine.DeadLetterSink
	// CommittedDeadLetters returns the dead letters of the lowest committed
	// epoch above after that has any, with that epoch; epoch 0 when there
	// is none. Records come back as DeadLetter made them.
	CommittedDeadLetters(ctx context.Context, after uint64) (uint64, []engine.Record, error)
	// ForgetDeadLetters deletes the committed dead letters of epochs up to
	// and including through: they were forwarded.
	ForgetDeadLetters(ctx context.Context, through uint64) error
}
