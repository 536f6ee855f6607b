package sinks

import (
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
