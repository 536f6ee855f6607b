package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/engine"
)

const (
	// changelogBufferedBytes bounds what the changelog producer holds
	// before Produce waits for the broker: one batch's state changes are
	// flushed at each Prepare, so this bounds memory, not throughput.
	changelogBufferedBytes = 64 << 20
	// restoreFetchBytes bounds one fetch while restoring: restoring holds
	// one fetch's records at a time.
	restoreFetchBytes = 16 << 20
	// flushTimeout bounds the wait for the brokers to take a batch's
	// changelog records (franz-go retries them until then): past it the
	// batch fails and is retried with the pipeline's backoff, after a
	// restore that first waits for the requests still in flight.
	flushTimeout = time.Minute
	// adminTimeout bounds one admin request (topic creation, listing
	// offsets) of a restore or delete.
	adminTimeout = 30 * time.Second
)

// ChangelogTopic is the topic that backs pipeline's state.
func ChangelogTopic(pipeline string) string { return "_sluice-state." + pipeline }

// changelog is the producer side of a pipeline's changelog topic.
type changelog struct {
	topic string
	opts  []kgo.Opt
	cl    *kgo.Client // produces
	admCl *kgo.Client // admin requests and restore fetches, apart so its metadata cache can be purged
	adm   *kadm.Client
	log   *slog.Logger

	parts int32 // partitions the topic is known to have
}

func newChangelog(pipeline string, opts []kgo.Opt, log *slog.Logger) (*changelog, error) {
	topic := ChangelogTopic(pipeline)
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, opts...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // franz-go's default, stated: Prepare is durable
		kgo.MaxBufferedBytes(changelogBufferedBytes),
		kgo.ProducerLinger(0),
	)...)
	if err != nil {
		return nil, fmt.Errorf("state: changelog client: %w", err)
	}
	admCl, err := kgo.NewClient(opts...)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("state: changelog client: %w", err)
	}
	return &changelog{topic: topic, opts: opts, cl: cl, admCl: admCl, adm: kadm.NewClient(admCl), log: log}, nil
}

func (c *changelog) close() {
	c.cl.Close()
	c.admCl.Close()
}

// ensure creates the topic (compacted, one partition per task) or adds
// partitions so task numbers up to need-1 have one.
func (c *changelog) ensure(ctx context.Context, need int32) error {
	if need <= c.parts {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	have, err := c.partitions(ctx)
	if err != nil {
		return err
	}
	if have == 0 {
		configs := map[string]*string{"cleanup.policy": ptr("compact")}
		_, err = c.adm.CreateTopic(ctx, need, -1, configs, c.topic)
		if errors.Is(err, kerr.InvalidConfig) || errors.Is(err, kerr.PolicyViolation) {
			c.log.Warn("state: the cluster refused a compacted changelog topic; keeping every record instead (retention.ms=-1), so the topic grows with every change",
				"topic", c.topic, "err", err)
			_, err = c.adm.CreateTopic(ctx, need, -1, map[string]*string{"retention.ms": ptr("-1")}, c.topic)
		}
		switch {
		case err == nil:
			c.log.Info("state: created changelog topic", "topic", c.topic, "partitions", need)
			have = need
		case errors.Is(err, kerr.TopicAlreadyExists): // another process created it
			if have, err = c.partitions(ctx); err != nil {
				return err
			}
		default:
			return engine.Retryable(fmt.Errorf("state: create changelog topic %s: %w; create it yourself (sluice topic create %s --partitions %d --config cleanup.policy=compact) or allow this client to", c.topic, err, c.topic, need))
		}
	}
	if have < need {
		_, err := c.adm.CreatePartitions(ctx, int(need-have), c.topic)
		switch {
		case err == nil:
			have = need
		case errors.Is(err, kerr.InvalidPartitions): // another process grew it first
			if have, err = c.partitions(ctx); err != nil {
				return err
			}
			if have < need {
				return engine.Retryable(fmt.Errorf("state: changelog topic %s has %d partitions, task %d needs %d", c.topic, have, need-1, need))
			}
		default:
			return engine.Retryable(fmt.Errorf("state: add partitions to changelog topic %s: %w", c.topic, err))
		}
	}
	c.parts = have
	return nil
}

// partitions returns the topic's partition count, 0 if it does not exist.
// It asks the cluster, not the client's metadata cache.
func (c *changelog) partitions(ctx context.Context) (int32, error) {
	c.admCl.PurgeTopicsFromClient(c.topic)
	td, err := c.adm.ListTopics(ctx, c.topic)
	if err != nil {
		return 0, engine.Retryable(fmt.Errorf("state: list changelog topic %s: %w", c.topic, err))
	}
	d, ok := td[c.topic]
	if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return 0, nil
	}
	if d.Err != nil {
		return 0, engine.Retryable(fmt.Errorf("state: changelog topic %s: %w", c.topic, d.Err))
	}
	return int32(len(d.Partitions)), nil
}

// produced collects the outcome of a set of produced records.
type produced struct {
	mu    sync.Mutex
	err   error
	next  map[engine.Task]int64 // per task, the offset after its last record
	first map[engine.Task]int64 // per task, the offset of its first record
}

// produce sends one record to task's partition; value nil is a tombstone.
func (c *changelog) produce(ctx context.Context, p *produced, task engine.Task, key, value []byte) {
	c.cl.Produce(ctx, &kgo.Record{Partition: int32(task), Key: key, Value: value}, c.promise(p, task))
}

// produceAll sends recs (their Partition set to task here) with one
// promise for all of them: Prepare sends a record per changed key, and a
// record and closure allocated per key showed in profiles.
func (c *changelog) produceAll(ctx context.Context, p *produced, task engine.Task, recs []kgo.Record) {
	promise := c.promise(p, task)
	for i := range recs {
		recs[i].Partition = int32(task)
		c.cl.Produce(ctx, &recs[i], promise)
	}
}

// promise returns the callback that records a produced record's outcome
// in p (nil: only logged).
func (c *changelog) promise(p *produced, task engine.Task) func(*kgo.Record, error) {
	return func(r *kgo.Record, err error) {
		if p == nil {
			if err != nil {
				c.log.Debug("state: changelog tombstone not written; the deleted record stays until the key changes again", "err", err)
			}
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if err != nil {
			if p.err == nil {
				p.err = err
			}
			return
		}
		if p.next == nil {
			p.next, p.first = map[engine.Task]int64{}, map[engine.Task]int64{}
		}
		p.next[task] = max(p.next[task], r.Offset+1)
		if f, ok := p.first[task]; !ok || r.Offset < f {
			p.first[task] = r.Offset
		}
	}
}

// flush waits for everything produced and returns the first failure.
func (c *changelog) flush(ctx context.Context, p *produced) error {
	ctx, cancel := context.WithTimeout(ctx, flushTimeout)
	defer cancel()
	if err := c.cl.Flush(ctx); err != nil {
		return engine.Retryable(fmt.Errorf("state: flush changelog %s: %w", c.topic, err))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return engine.Retryable(fmt.Errorf("state: write changelog %s: %w", c.topic, p.err))
	}
	return nil
}

// settle makes sure nothing produced before is still on its way, so a
// restore reads the partition as it will stay: records given up on are
// failed, requests in flight answered.
func (c *changelog) settle(ctx context.Context) error {
	if err := c.cl.AbortBufferedRecords(ctx); err != nil {
		return engine.Retryable(fmt.Errorf("state: changelog %s: %w", c.topic, err))
	}
	return nil
}

// bounds returns each partition's start and end offsets.
func (c *changelog) bounds(ctx context.Context) (start, end map[int32]int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	c.admCl.PurgeTopicsFromClient(c.topic)
	starts, err := c.adm.ListStartOffsets(ctx, c.topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, nil, engine.Retryable(fmt.Errorf("state: list start offsets of %s: %w", c.topic, err))
	}
	ends, err := c.adm.ListEndOffsets(ctx, c.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, nil, engine.Retryable(fmt.Errorf("state: list end offsets of %s: %w", c.topic, err))
	}
	start, end = map[int32]int64{}, map[int32]int64{}
	starts.Each(func(o kadm.ListedOffset) { start[o.Partition] = o.Offset })
	ends.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })
	return start, end, nil
}

// read calls apply with the records of each partition in from, from its
// offset up to (not including) its end in until, a fetch at a time. It
// fetches raw (kmsg) so that it knows where each fetch ends even when
// compaction left no record at the partition's last offsets.
func (c *changelog) read(ctx context.Context, from, until map[int32]int64, apply func(p int32, recs []logRecord) error) error {
	var parts []int32
	for p, o := range from {
		if o < until[p] {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return nil
	}
	slices.Sort(parts)
	c.admCl.PurgeTopicsFromClient(c.topic)
	md, err := c.adm.Metadata(ctx, c.topic)
	if err != nil {
		return engine.Retryable(fmt.Errorf("state: metadata of %s: %w", c.topic, err))
	}
	td, ok := md.Topics[c.topic]
	if !ok || td.Err != nil {
		return engine.Retryable(fmt.Errorf("state: metadata of %s: %v", c.topic, td.Err))
	}
	decomp := kgo.DefaultDecompressor()
	for _, p := range parts {
		pd, ok := td.Partitions[p]
		if !ok || pd.Leader < 0 {
			return engine.Retryable(fmt.Errorf("state: changelog %s partition %d has no leader", c.topic, p))
		}
		for at, end := from[p], until[p]; at < end; {
			rp, err := c.fetch(ctx, pd.Leader, td.ID, p, at)
			if err != nil {
				return err
			}
			fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
				Offset: at, Topic: c.topic, Partition: p, IsolationLevel: kgo.ReadUncommitted(),
			}, &rp, decomp, nil)
			if fp.Err != nil {
				return engine.Retryable(fmt.Errorf("state: read changelog %s partition %d at %d: %w", c.topic, p, at, fp.Err))
			}
			if next <= at {
				return engine.Retryable(fmt.Errorf("state: read changelog %s partition %d: no progress at offset %d (end %d)", c.topic, p, at, end))
			}
			recs := make([]logRecord, 0, len(fp.Records))
			for _, r := range fp.Records {
				if r.Offset >= end {
					break
				}
				recs = append(recs, logRecord{key: r.Key, value: r.Value, offset: r.Offset})
			}
			if err := apply(p, recs); err != nil {
				return err
			}
			at = next
		}
	}
	return nil
}

// fetch fetches partition p from offset at, raw, at its leader.
func (c *changelog) fetch(ctx context.Context, leader int32, id [16]byte, p int32, at int64) (kmsg.FetchResponseTopicPartition, error) {
	req := kmsg.NewPtrFetchRequest()
	req.MaxBytes, req.MinBytes, req.MaxWaitMillis = restoreFetchBytes, 1, 0
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = c.topic, id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, at, restoreFetchBytes
	rp.CurrentLeaderEpoch, rp.LogStartOffset = -1, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, c.admCl.Broker(int(leader)))
	if err != nil {
		return kmsg.FetchResponseTopicPartition{}, engine.Retryable(fmt.Errorf("state: fetch changelog %s partition %d at %d: %w", c.topic, p, at, err))
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return kmsg.FetchResponseTopicPartition{}, engine.Retryable(fmt.Errorf("state: fetch changelog %s partition %d at %d: answer for %d topics", c.topic, p, at, len(resp.Topics)))
	}
	return resp.Topics[0].Partitions[0], nil
}

func ptr[T any](v T) *T { return &v }
