package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"

	"github.com/sluicehq/sluice/engine"
)

// readCommitted is Kafka's isolation level 1: records of aborted
// transactions are filtered out and reads stop at the last stable offset.
const readCommitted = 1

// controlAbort is the type of a transaction's abort marker (commit is 1).
const controlAbort = 0

// readRange fetches [r.from, r.to) of one partition. It sends the fetch
// itself (kafka-go's Client.Fetch does not expose the aborted transactions
// a read_committed consumer must drop) and walks the record batches:
// transaction markers are stepped over, and batches of aborted
// transactions are skipped, so a pipeline reading a topic written by
// transactional producers sees exactly the committed records.
func (d *Direct) readRange(ctx context.Context, r *offsetRange) error {
	r.records = make([]engine.Record, 0, r.to-r.from)
	next := r.from
	empty := 0 // fetches in a row that moved nothing forward
	for next < r.to {
		if empty == maxEmptyFetches {
			return fmt.Errorf("kafka fetch %s: %d fetches at offset %d returned nothing although the partition ends past it", r.tp, empty, next)
		}
		part, err := d.fetchPartition(ctx, r.tp, next)
		if err != nil {
			return fmt.Errorf("kafka fetch %s at %d: %w", r.tp, next, err)
		}
		before := next
		got, err := r.consume(part, &next)
		if err != nil {
			return fmt.Errorf("kafka fetch %s at %d: %w", r.tp, before, err)
		}
		if !got && next < r.to && part.HighWatermark <= next {
			// Records below the end we listed vanished (compaction at the
			// tail): the range is done.
			next = r.to
		}
		if next == before {
			empty++
		} else {
			empty = 0
		}
	}
	return nil
}

func (d *Direct) fetchPartition(ctx context.Context, tp engine.TopicPartition, offset int64) (*fetchapi.ResponsePartition, error) {
	m, err := d.client.Transport.RoundTrip(ctx, d.client.Addr, &fetchapi.Request{
		ReplicaID:      -1,
		MaxWaitTime:    int32(fetchMaxWait / time.Millisecond),
		MinBytes:       1,
		MaxBytes:       fetchMaxBytes,
		IsolationLevel: readCommitted,
		SessionID:      -1,
		SessionEpoch:   -1,
		Topics: []fetchapi.RequestTopic{{
			Topic: tp.Topic,
			Partitions: []fetchapi.RequestPartition{{
				Partition: tp.Partition, CurrentLeaderEpoch: -1, FetchOffset: offset,
				LogStartOffset: -1, PartitionMaxBytes: fetchMaxBytes,
			}},
		}},
	})
	if err != nil {
		return nil, err
	}
	resp, ok := m.(*fetchapi.Response)
	if !ok {
		return nil, fmt.Errorf("unexpected response %T", m)
	}
	if resp.ErrorCode != 0 {
		return nil, kafkago.Error(resp.ErrorCode)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return nil, errors.New("the broker answered for another partition")
	}
	part := &resp.Topics[0].Partitions[0]
	if part.ErrorCode != 0 {
		return nil, kafkago.Error(part.ErrorCode)
	}
	return part, nil
}

// consume appends the committed records of one fetch response with offsets
// in [*next, r.to) to r, advancing *next past every offset it passes,
// markers and aborted records included. It reports whether it passed any.
func (r *offsetRange) consume(part *fetchapi.ResponsePartition, next *int64) (bool, error) {
	var batches []protocol.RecordReader
	switch rs := part.RecordSet.Records.(type) {
	case nil:
		return false, nil
	case *protocol.RecordStream:
		batches = rs.Records
	default:
		batches = []protocol.RecordReader{rs}
	}
	aborted := append([]fetchapi.ResponseTransaction(nil), part.AbortedTransactions...)
	sort.Slice(aborted, func(i, j int) bool { return aborted[i].FirstOffset < aborted[j].FirstOffset })
	abortedProducers := map[int64]bool{}
	start := *next
	for _, b := range batches {
		switch b := b.(type) {
		case *protocol.ControlBatch:
			for {
				rec, err := b.ReadRecord()
				if err != nil {
					break
				}
				if cr, err := protocol.ReadControlRecord(rec); err == nil && cr.Type == controlAbort {
					delete(abortedProducers, b.ProducerID)
				}
				r.pass(rec.Offset, next)
			}
		case *protocol.RecordBatch:
			for len(aborted) > 0 && aborted[0].FirstOffset <= b.BaseOffset {
				abortedProducers[aborted[0].ProducerID] = true
				aborted = aborted[1:]
			}
			skip := b.Attributes.Transactional() && abortedProducers[b.ProducerID]
			if err := r.appendBatch(b, skip, next); err != nil {
				return *next > start, err
			}
		default:
			if err := r.appendBatch(b, false, next); err != nil {
				return *next > start, err
			}
		}
		if *next >= r.to {
			break
		}
	}
	return *next > start, nil
}

// pass moves *next past offset if it lies within the range.
func (r *offsetRange) pass(offset int64, next *int64) {
	if offset >= *next {
		*next = min(offset+1, r.to)
	}
}

// appendBatch copies a batch's records in [*next, r.to) into r, or only
// steps over them when skip is set (an aborted transaction's records).
func (r *offsetRange) appendBatch(b protocol.RecordReader, skip bool, next *int64) error {
	for {
		rec, err := b.ReadRecord()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		off := rec.Offset
		if off < *next || off >= r.to || skip {
			discard(rec)
			if off >= *next {
				*next = min(off+1, r.to)
			}
			continue
		}
		key, err := r.arena.read(rec.Key)
		if err != nil {
			return err
		}
		value, err := r.arena.read(rec.Value)
		if err != nil {
			return err
		}
		var headers []engine.Header
		for _, h := range rec.Headers {
			headers = append(headers, engine.Header{Key: h.Key, Value: h.Value})
		}
		r.records = append(r.records, engine.Record{
			Topic: r.tp.Topic, Partition: r.tp.Partition, Offset: off,
			Key: key, Value: value, Headers: headers, Time: rec.Time,
		})
		*next = off + 1
	}
}
