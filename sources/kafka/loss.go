package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
)

// This file is on-data-loss for both modes: records retention deleted
// before the pipeline read them fail the pipeline (ErrDataLoss) or are
// skipped, logged and counted. Both modes find them when a fetch goes out
// of range; receiver mode also when the group assigns a partition whose
// committed offset is below its log start (startPositions).

// ErrDataLoss means retention deleted records the pipeline had not read.
var ErrDataLoss = errors.New("records were deleted by retention before the pipeline read them")

// dataLossError is on-data-loss: fail for offsets from..start-1 of tp,
// deleted before the pipeline read them. It is not retryable: the records
// will not come back.
func dataLossError(tp engine.TopicPartition, from, start int64) error {
	return fmt.Errorf("kafka %s: offsets %d..%d: %w; set on-data-loss: skip to continue from %d, or raise the topic's retention",
		tp, from, start-1, ErrDataLoss, start)
}

// noteLoss is on-data-loss: skip for offsets from..start-1 of tp.
// log names the pipeline.
func noteLoss(log *slog.Logger, m *Metrics, pipeline string, tp engine.TopicPartition, from, start int64) {
	log.Warn("records lost to retention, skipping them",
		"partition", tp.String(), "from", from, "to", start-1)
	m.lost(pipeline, tp, start-from)
}

// Direct mode.

// behindLogStart applies on-data-loss when tp's position is below start.
func (d *Direct) behindLogStart(tp engine.TopicPartition, start int64) error {
	pos := d.pos[tp]
	if pos >= start {
		return nil
	}
	if !d.cfg.SkipLoss {
		return dataLossError(tp, pos, start)
	}
	noteLoss(d.log, d.cfg.Metrics, d.cfg.Pipeline, tp, pos, start)
	d.pos[tp] = start
	if p := d.parts[tp]; p != nil {
		p.ahead = nil
		d.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{tp.Topic: {tp.Partition: {Epoch: -1, Offset: start}}})
	}
	return nil
}

// outOfRange decides what an OFFSET_OUT_OF_RANGE of tp means: retention
// overtook the position (on-data-loss) or the log was truncated or
// recreated below it (never re-read, never skipped silently).
func (d *Direct) outOfRange(ctx context.Context, tp engine.TopicPartition) error {
	starts, err := listOffsets(ctx, d.adm.ListStartOffsets, []engine.TopicPartition{tp})
	if err != nil {
		return err
	}
	if d.pos[tp] < starts[tp] {
		return d.behindLogStart(tp, starts[tp])
	}
	return engine.Retryable(fmt.Errorf("kafka %s: position %d is past the log end; the topic may have been recreated", tp, d.pos[tp]))
}

// Receiver mode.

// outOfRange handles partitions whose fetch position is no longer in the
// log. Below the log start, retention deleted records the receiver had not
// read: fail returns the error, skip moves the partition to the log start.
// It runs on the polling goroutine before AllowRebalance, where franz-go
// wants SetOffsets called.
func (r *Receiver) outOfRange(ctx context.Context, tps []engine.TopicPartition) error {
	adm := kadm.NewClient(r.cl)
	set := engine.Positions{}
	for _, tp := range tps {
		set[tp] = 0
	}
	topics := topicsOf(set)
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		var ends kadm.ListedOffsets
		if ends, err = adm.ListEndOffsets(ctx, topics...); err == nil {
			err = r.seekInRange(tps, starts, ends)
		}
	}
	if err != nil && !errors.Is(err, ErrDataLoss) {
		return engine.Retryable(fmt.Errorf("kafka receiver: %w", err))
	}
	return err
}

func (r *Receiver) seekInRange(tps []engine.TopicPartition, starts, ends kadm.ListedOffsets) error {
	seek := map[string]map[int32]kgo.EpochOffset{}
	for _, tp := range tps {
		start, ok := starts.Lookup(tp.Topic, tp.Partition)
		end, ok2 := ends.Lookup(tp.Topic, tp.Partition)
		if !ok || !ok2 {
			return fmt.Errorf("list offsets: %s not listed", tp)
		}
		if err := errors.Join(start.Err, end.Err); err != nil {
			return fmt.Errorf("list offsets of %s: %w", tp, err)
		}
		r.gmu.Lock()
		from := r.part(tp).at
		r.gmu.Unlock()
		to := start.Offset
		switch {
		case from < 0:
			// Started by the start policy and nothing read yet: the
			// records retention took were never this group's to read.
			r.log.Debug("partition starts at its log start", "partition", tp.String(), "offset", to)
			r.skipped(tp, to)
		case from < start.Offset:
			if !r.cfg.SkipLoss {
				return dataLossError(tp, from, start.Offset)
			}
			noteLoss(r.log, r.cfg.Metrics, r.cfg.Pipeline, tp, from, start.Offset)
			r.skipped(tp, to)
		case from > end.Offset:
			return fmt.Errorf("kafka %s: position %d is past the log end %d; the topic may have been recreated", tp, from, end.Offset)
		default:
			// In range again: the error was about an earlier position.
			to = from
		}
		if seek[tp.Topic] == nil {
			seek[tp.Topic] = map[int32]kgo.EpochOffset{}
		}
		seek[tp.Topic][tp.Partition] = kgo.EpochOffset{Epoch: -1, Offset: to}
	}
	r.cl.SetOffsets(seek)
	return nil
}

// resumeInRange applies on-data-loss to the assigned partitions that
// would resume (resume) below their log start, changing offsets, the
// positions franz-go is about to fetch from: fail leaves such a partition
// unread and fails the receiver, skip starts it at the log start. It
// fails only if the log starts cannot be listed.
func (r *Receiver) resumeInRange(ctx context.Context, cl *kgo.Client, resume engine.Positions, offsets map[string]map[int32]kgo.Offset) error {
	starts, err := logStarts(ctx, cl, resume)
	if err != nil {
		return err
	}
	for _, tp := range resume.Sorted() {
		from, start := resume[tp], starts[tp]
		if from >= start {
			continue
		}
		if !r.cfg.SkipLoss {
			// Never read, so nothing past the loss is logged or
			// committed: the group keeps its offset for the next try.
			delete(offsets[tp.Topic], tp.Partition)
			r.gmu.Lock()
			st := r.part(tp)
			st.assigned, st.hasPending = false, false
			r.gmu.Unlock()
			r.fail(dataLossError(tp, from, start))
			continue
		}
		noteLoss(r.log, r.cfg.Metrics, r.cfg.Pipeline, tp, from, start)
		offsets[tp.Topic][tp.Partition] = kgo.NewOffset().At(start)
		r.skipped(tp, start)
	}
	return nil
}

// logStarts lists the log start offsets of the partitions in tps.
func logStarts(ctx context.Context, cl *kgo.Client, tps engine.Positions) (engine.Positions, error) {
	listed, err := kadm.NewClient(cl).ListStartOffsets(ctx, topicsOf(tps)...)
	if err != nil {
		return nil, fmt.Errorf("kafka list offsets: %w", err)
	}
	return lookupAll(listed, tps)
}
