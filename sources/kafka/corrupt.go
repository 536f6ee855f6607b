package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/broker/storage"
	"github.com/sluicehq/sluice/engine"
)

// This file is on-corrupt for both modes: a record batch no client can
// decode (a CRC that does not match, a payload that does not decompress,
// records whose varints or lengths run wrong) fails the pipeline with
// ErrCorrupt, or is skipped, logged and counted.
//
// franz-go does not say so in one way: a bad CRC or payload is a fetch
// error of the partition, repeated at every fetch; a batch whose records
// stop decoding part-way yields the records before and then nothing, with
// no error, so the partition looks stalled. Either way the position stops
// at the batch, so both modes, when a partition errs with something that is
// not a Kafka error code or stalls, fetch the batch at its position raw and
// decode it themselves (probeBatch). Only a batch that does not decode is
// corruption; anything else stays a retried failure.

// ErrCorrupt means a record batch in Kafka cannot be decoded.
var ErrCorrupt = errors.New("record batch cannot be decoded")

// probeMaxBytes is what a probe asks for: a batch is returned whole however
// large (KIP-74), so this only bounds what comes after it.
const probeMaxBytes = 1 << 20

// corruptBatch is a batch that does not decode: offsets from..to of tp
// (to is -1 if the batch's header cannot say where it ends).
type corruptBatch struct {
	tp       engine.TopicPartition
	from, to int64
	reason   error
}

// err is on-corrupt: fail.
func (c *corruptBatch) err() error {
	where := fmt.Sprintf("offsets %d..%d", c.from, c.to)
	if c.to < 0 {
		where = fmt.Sprintf("offset %d", c.from)
	}
	return fmt.Errorf("kafka %s: %s: %w (%v); set on-corrupt: skip to skip the batch (its records are lost), or repair the topic",
		c.tp, where, ErrCorrupt, c.reason)
}

// skip is on-corrupt: skip: it logs and counts the batch and returns the
// offset to read on from, or fails if the batch's end is unknown.
func (c *corruptBatch) skip(log *slog.Logger, m *Metrics, pipeline string) (int64, error) {
	if c.to < c.from {
		return 0, fmt.Errorf("%w; its header is damaged too, so where it ends is unknown", c.err())
	}
	log.Warn("record batch cannot be decoded, skipping it",
		"partition", c.tp.String(), "from", c.from, "to", c.to, "err", c.reason)
	m.corrupt(pipeline, c.tp, c.to-c.from+1)
	return c.to + 1, nil
}

// suspect says a fetch error may be a batch that does not decode: franz-go
// reports those as plain errors, never as Kafka error codes.
func suspect(err error) bool {
	var ke *kerr.Error
	return err != nil && !errors.As(err, &ke) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// probeBatch fetches, raw, the batch of tp that holds offset at from the
// partition's leader and decodes it. It returns nil if that batch decodes
// (or is not there yet): the trouble is elsewhere.
func probeBatch(ctx context.Context, cl *kgo.Client, tp engine.TopicPartition, at int64) (*corruptBatch, error) {
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(tp.Topic)
	meta.Topics = append(meta.Topics, mt)
	mresp, err := meta.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("kafka metadata of %s: %w", tp.Topic, err)
	}
	leader, topicID := int32(-1), [16]byte{}
	for _, t := range mresp.Topics {
		if t.Topic == nil || *t.Topic != tp.Topic {
			continue
		}
		topicID = t.TopicID
		for _, p := range t.Partitions {
			if p.Partition == tp.Partition {
				leader = p.Leader
			}
		}
	}
	if leader < 0 {
		return nil, fmt.Errorf("kafka %s: no leader known", tp)
	}
	p, err := fetchAt(ctx, cl, leader, topicID, tp, at)
	if err != nil {
		return nil, err
	}
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		if errors.Is(err, kerr.CorruptMessage) {
			// The broker found the batch corrupt and does not serve it
			// (the built-in broker checks CRCs on read): where it ends is
			// where fetches are answered again.
			return &corruptBatch{tp: tp, from: at, to: corruptEnd(ctx, cl, leader, topicID, tp, at, p.HighWatermark), reason: err}, nil
		}
		return nil, fmt.Errorf("kafka fetch %s at %d: %w", tp, at, err)
	}
	return findCorrupt(tp, p.RecordBatches, at), nil
}

// fetchAt fetches, raw, tp's batches from at at its leader.
func fetchAt(ctx context.Context, cl *kgo.Client, leader int32, topicID [16]byte, tp engine.TopicPartition, at int64) (kmsg.FetchResponseTopicPartition, error) {
	req := kmsg.NewPtrFetchRequest()
	req.MaxBytes, req.MinBytes, req.MaxWaitMillis = probeMaxBytes, 1, 0
	req.IsolationLevel = 1 // read_committed, as the sources read
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = tp.Topic, topicID
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = tp.Partition, at, probeMaxBytes
	rp.CurrentLeaderEpoch, rp.LogStartOffset = -1, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl.Broker(int(leader)))
	if err != nil {
		return kmsg.FetchResponseTopicPartition{}, fmt.Errorf("kafka fetch %s at %d: %w", tp, at, err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return kmsg.FetchResponseTopicPartition{}, fmt.Errorf("kafka fetch %s at %d: answer for %d topics", tp, at, len(resp.Topics))
	}
	return resp.Topics[0].Partitions[0], nil
}

// corruptEnd finds the last offset of the batch at `at` that the broker
// answers CORRUPT_MESSAGE for: fetches inside it fail, fetches past it are
// answered, so it searches for the first offset answered, doubling the
// step and then halving (about 2·log₂ of the batch's records in fetches).
// It returns -1 if it cannot tell (hwm unknown, or an answer that is
// neither), which on-corrupt: skip refuses.
func corruptEnd(ctx context.Context, cl *kgo.Client, leader int32, topicID [16]byte, tp engine.TopicPartition, at, hwm int64) int64 {
	answered := func(off int64) (ok bool, known bool) {
		p, err := fetchAt(ctx, cl, leader, topicID, tp, off)
		if err != nil {
			return false, false
		}
		switch code := kerr.ErrorForCode(p.ErrorCode); {
		case code == nil:
			return true, true
		case errors.Is(code, kerr.CorruptMessage):
			return false, true
		}
		return false, false
	}
	if hwm <= at {
		return -1
	}
	// lo is answered CORRUPT_MESSAGE, hi answered (the log end always is).
	lo, hi := at, hwm
	for step := int64(1); lo+step < hi; step *= 2 {
		ok, known := answered(lo + step)
		if !known {
			return -1
		}
		if ok {
			hi = lo + step
			break
		}
		lo += step
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, known := answered(mid)
		if !known {
			return -1
		}
		if ok {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi - 1
}

// findCorrupt decodes the batch of raw (a fetch answer's record batches)
// that holds offset at: nil if it decodes or is not in raw. The last batch
// of an answer may be cut short by the answer's size; the first never is
// (KIP-74), so a first batch longer than the answer has a damaged length.
func findCorrupt(tp engine.TopicPartition, raw []byte, at int64) *corruptBatch {
	for i := 0; len(raw) > 0; i++ {
		size := int64(-1)
		if len(raw) >= 12 {
			size = int64(int32(binary.BigEndian.Uint32(raw[8:]))) + 12
		}
		first, last, err := storage.CheckFetched(raw)
		whole := size > 12 && size <= int64(len(raw))
		switch {
		case err == nil && last >= at:
			return nil
		case err == nil || last >= 0 && last < at && whole:
			raw = raw[size:] // before at: not what the reader is stuck on
			continue
		case i > 0 && !whole:
			return nil // the answer's cut tail
		}
		return &corruptBatch{tp: tp, from: max(at, first), to: last, reason: err}
	}
	return nil
}

// Direct mode.

// skipTo is where a partition reads on after a skipped batch.
type skipTo struct {
	tp         engine.TopicPartition
	from, next int64
}

// fetchedTo is where franz-go fetches p from next, as far as Direct knows:
// past what it holds ahead.
func (d *Direct) fetchedTo(p *partition) int64 {
	if n := len(p.ahead); n > 0 {
		return p.ahead[n-1].rec.Offset + 1
	}
	return d.pos[p.tp]
}

// lastFetched is the last offset of tp in fetches, or -1.
func lastFetched(fetches kgo.Fetches, tp engine.TopicPartition) int64 {
	last := int64(-1)
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if fp.Topic == tp.Topic && fp.Partition == tp.Partition && len(fp.Records) > 0 {
			last = max(last, fp.Records[len(fp.Records)-1].Offset)
		}
	})
	return last
}

// corruptAt probes tp's batch at offset at: found is false if it decodes
// (or the probe failed; the caller's error stands). A batch that does not
// decode fails the pipeline (on-corrupt: fail) or is skipped: the client
// reads on after it, and the position passes over it after the records
// before it (absorb).
func (d *Direct) corruptAt(ctx context.Context, tp engine.TopicPartition, at int64) (found bool, err error) {
	c, perr := probeBatch(ctx, d.cl, tp, at)
	if perr != nil || c == nil {
		if perr != nil {
			d.log.Debug("probe of a failing partition failed", "partition", tp.String(), "err", perr)
		}
		return false, nil
	}
	if !d.cfg.SkipCorrupt {
		return true, c.err()
	}
	next, err := c.skip(d.log, d.cfg.Metrics, d.cfg.Pipeline)
	if err != nil {
		return true, err
	}
	d.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{tp.Topic: {tp.Partition: {Epoch: -1, Offset: next}}})
	d.skips = append(d.skips, skipTo{tp: tp, from: c.from, next: next})
	return true, nil
}

// probeStalled probes every stalled partition; skipped says one was
// skipped past a corrupt batch, so the batch can go on.
func (d *Direct) probeStalled(ctx context.Context, b *cut) (skipped bool, err error) {
	for _, tp := range d.sortedParts() {
		p := d.parts[tp]
		if pos := d.pos[tp]; pos >= p.target || pos >= p.end {
			continue
		}
		found, err := d.corruptAt(ctx, tp, d.fetchedTo(p))
		if err != nil {
			return false, err
		}
		skipped = skipped || found
	}
	for _, sk := range d.skips {
		d.passOver(b, d.parts[sk.tp], sk)
	}
	d.skips = d.skips[:0]
	return skipped, nil
}

// passOver moves p's position past a skipped batch, in order: a control
// record at the batch's first offset, taken at once if nothing is held
// ahead, else after what is.
func (d *Direct) passOver(b *cut, p *partition, sk skipTo) {
	f := fetched{rec: engine.Record{Topic: p.tp.Topic, Partition: p.tp.Partition, Offset: sk.from}, control: true, skipTo: sk.next}
	if len(p.ahead) == 0 && f.rec.Offset < p.target {
		d.take(b, p, &f)
	} else if f.rec.Offset >= d.pos[p.tp] {
		p.ahead = append(p.ahead, f)
	}
}

// Receiver mode: the poll loop calls these.

// fetchedTo is where franz-go fetches tp from next, as far as the receiver
// knows: past its position, the block being built and this poll.
func (r *Receiver) fetchedTo(tp engine.TopicPartition, fetches kgo.Fetches, b *block) int64 {
	r.gmu.Lock()
	at := r.part(tp).at
	r.gmu.Unlock()
	if eo, ok := b.last[tp]; ok {
		at = max(at, eo.Offset)
	}
	return max(at, lastFetched(fetches, tp)+1)
}

// corruptAt is Direct.corruptAt for the receiver. A skipped batch's end
// becomes the group offset the block being built commits (passOver).
func (r *Receiver) corruptAt(ctx context.Context, tp engine.TopicPartition, at int64) (found bool, err error) {
	c, perr := probeBatch(ctx, r.cl, tp, at)
	if perr != nil || c == nil {
		if perr != nil {
			r.log.Debug("probe of a failing partition failed", "partition", tp.String(), "err", perr)
		}
		return false, nil
	}
	if !r.cfg.SkipCorrupt {
		return true, c.err()
	}
	next, err := c.skip(r.log, r.cfg.Metrics, r.cfg.Pipeline)
	if err != nil {
		return true, err
	}
	r.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{tp.Topic: {tp.Partition: {Epoch: -1, Offset: next}}})
	r.skipped(tp, next)
	r.skips = append(r.skips, skipTo{tp: tp, from: c.from, next: next})
	return true, nil
}

// passOver makes the block being built carry the group offsets past the
// batches skipped in the poll it just absorbed.
func (r *Receiver) passOver(b *block) {
	for _, sk := range r.skips {
		b.last[sk.tp] = kgo.EpochOffset{Epoch: -1, Offset: sk.next}
	}
	r.skips = r.skips[:0]
}
