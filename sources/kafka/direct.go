package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/engine"
)

const (
	// fetchMaxBytes is what one fetch asks for per partition: large enough
	// that a 50,000-record range of small records takes a few round trips.
	fetchMaxBytes = 8 << 20
	// fetchMaxWait bounds a fetch's long-poll; a direct batch only reads
	// offsets below the end it listed, so it rarely waits at all.
	fetchMaxWait = 500 * time.Millisecond
	// maxParallelFetches bounds the partitions read at once per batch.
	maxParallelFetches = 16
	// metadataRefresh is how often partitions are rediscovered (new
	// partitions, new topics matching a pattern).
	metadataRefresh = 10 * time.Second
	// emptyPoll is how often an idle source looks for new records within
	// the engine's Wait.
	emptyPoll = 20 * time.Millisecond
	// maxEmptyFetches bounds fetches that return nothing below an end the
	// broker listed, so a misbehaving broker makes a retried error, not a
	// busy loop.
	maxEmptyFetches = 10
)

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

// DirectConfig configures a direct-mode source.
type DirectConfig struct {
	Conn     Connection
	Topics   []string
	Pattern  string // a regular expression over topic names, instead of Topics
	Start    string // earliest | latest, when the sink has no positions
	Group    string // positions are echoed here after each commit, for lag tools
	MaxRate  int64  // records/s per partition; 0 = unlimited
	SkipLoss bool   // on-data-loss: skip (true) or fail
	Pipeline string
	Logger   *slog.Logger
	Metrics  *Metrics
}

// Direct is the direct-mode source (engine.Source).
type Direct struct {
	cfg     DirectConfig
	pattern *regexp.Regexp
	client  *kafkago.Client
	log     *slog.Logger

	pos          engine.Positions // next offset per partition
	ends         engine.Positions // log end offsets seen by the last listing
	refreshed    time.Time
	refreshEvery time.Duration
	lastNext     time.Time
}

// NewDirect returns a direct-mode source; it connects on Open.
func NewDirect(cfg DirectConfig) (*Direct, error) {
	d := &Direct{cfg: cfg, log: cfg.Logger, refreshEvery: metadataRefresh}
	if d.log == nil {
		d.log = slog.Default()
	}
	if cfg.Pattern != "" {
		re, err := regexp.Compile("^(?:" + cfg.Pattern + ")$")
		if err != nil {
			return nil, fmt.Errorf("kafka pattern %q: %w", cfg.Pattern, err)
		}
		d.pattern = re
	} else if len(cfg.Topics) == 0 {
		return nil, errors.New("kafka: list topics or give a pattern")
	}
	return d, nil
}

// Open implements engine.Source: it discovers the partitions and resumes
// each at from, or at the start policy for partitions from does not name.
func (d *Direct) Open(ctx context.Context, from engine.Positions) error {
	client, err := d.cfg.Conn.client("sluice-" + d.cfg.Pipeline)
	if err != nil {
		return err
	}
	d.client = client
	d.pos = from.Clone()
	if d.pos == nil {
		d.pos = engine.Positions{}
	}
	d.ends = engine.Positions{}
	d.lastNext = time.Now()
	return d.refresh(ctx, d.cfg.Start)
}

// refresh looks for partitions not tracked yet and places them at start
// (the pipeline's policy on Open; earliest for partitions that appear
// later, so nothing written to them is missed).
func (d *Direct) refresh(ctx context.Context, start string) error {
	meta, err := d.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: d.metadataTopics()})
	if err != nil {
		return engine.Retryable(fmt.Errorf("kafka metadata: %w", err))
	}
	var fresh []engine.TopicPartition
	for _, t := range meta.Topics {
		if t.Error != nil {
			if d.pattern == nil {
				return engine.Retryable(fmt.Errorf("kafka topic %s: %w; create it or fix the topic name", t.Name, t.Error))
			}
			continue
		}
		if d.pattern != nil && !d.pattern.MatchString(t.Name) {
			continue
		}
		for _, p := range t.Partitions {
			tp := engine.TopicPartition{Topic: t.Name, Partition: int32(p.ID)}
			if _, ok := d.pos[tp]; !ok {
				fresh = append(fresh, tp)
			}
		}
	}
	if d.pattern == nil {
		for _, name := range d.cfg.Topics {
			found := false
			for _, t := range meta.Topics {
				found = found || t.Name == name
			}
			if !found {
				return engine.Retryable(fmt.Errorf("kafka topic %s does not exist; create it (sluice topic create %s) or fix the topic name", name, name))
			}
		}
	}
	if len(fresh) > 0 {
		first, last, err := listOffsets(ctx, d.client, fresh)
		if err != nil {
			return err
		}
		for _, tp := range fresh {
			if start == "latest" {
				d.pos[tp] = last[tp]
			} else {
				d.pos[tp] = first[tp]
			}
			d.log.Info("reading partition", "pipeline", d.cfg.Pipeline, "partition", tp.String(), "offset", d.pos[tp])
		}
	}
	d.refreshed = time.Now()
	return nil
}

func (d *Direct) subscribed(topic string) bool {
	if d.pattern != nil {
		return d.pattern.MatchString(topic)
	}
	return slices.Contains(d.cfg.Topics, topic)
}

func (d *Direct) metadataTopics() []string {
	if d.pattern != nil {
		return nil // all topics
	}
	return d.cfg.Topics
}

// listOffsets returns the log start and end offsets of tps.
func listOffsets(ctx context.Context, client *kafkago.Client, tps []engine.TopicPartition) (first, last engine.Positions, err error) {
	// read_committed: a partition's end is its last stable offset, so an
	// open transaction's records are not cut into a batch before they
	// are decided.
	req := &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{}, IsolationLevel: kafkago.ReadCommitted}
	for _, tp := range tps {
		p := int(tp.Partition)
		req.Topics[tp.Topic] = append(req.Topics[tp.Topic], kafkago.FirstOffsetOf(p), kafkago.LastOffsetOf(p))
	}
	resp, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, nil, engine.Retryable(fmt.Errorf("kafka list offsets: %w", err))
	}
	first, last = engine.Positions{}, engine.Positions{}
	for topic, parts := range resp.Topics {
		for _, p := range parts {
			if p.Error != nil {
				return nil, nil, engine.Retryable(fmt.Errorf("kafka list offsets of %s/%d: %w", topic, p.Partition, p.Error))
			}
			tp := engine.TopicPartition{Topic: topic, Partition: int32(p.Partition)}
			first[tp], last[tp] = p.FirstOffset, p.LastOffset
		}
	}
	return first, last, nil
}

// offsetRange is what one partition contributes to a batch.
type offsetRange struct {
	tp       engine.TopicPartition
	from, to int64
	records  []engine.Record
	arena    arena
}

// Next implements engine.Source: one offset range per partition, read in
// parallel.
func (d *Direct) Next(ctx context.Context, limits engine.Limits) ([]engine.Record, engine.Positions, error) {
	deadline := time.Now().Add(limits.Wait)
	for {
		ranges, err := d.plan(ctx, limits)
		if err != nil {
			return nil, nil, err
		}
		if len(ranges) > 0 {
			recs, err := d.read(ctx, ranges)
			if err != nil {
				return nil, nil, err
			}
			for _, r := range ranges {
				d.pos[r.tp] = r.to
			}
			return recs, d.pos.Clone(), nil
		}
		if !time.Now().Before(deadline) {
			return nil, d.pos.Clone(), nil
		}
		t := time.NewTimer(min(emptyPoll, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, ctx.Err()
		case <-t.C:
		}
	}
}

// plan lists the partitions' offsets and cuts this batch's ranges.
func (d *Direct) plan(ctx context.Context, limits engine.Limits) ([]offsetRange, error) {
	if time.Since(d.refreshed) >= d.refreshEvery {
		if err := d.refresh(ctx, "earliest"); err != nil {
			return nil, err
		}
	}
	// Positions of topics no longer subscribed (the topics list or the
	// pattern changed) are carried along untouched, never read.
	var tps []engine.TopicPartition
	for _, tp := range d.pos.Sorted() {
		if d.subscribed(tp.Topic) {
			tps = append(tps, tp)
		}
	}
	first, last, err := listOffsets(ctx, d.client, tps)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	elapsed := now.Sub(d.lastNext)
	var ranges []offsetRange
	var backlog int64
	for _, tp := range tps {
		end, ok := last[tp]
		if !ok {
			continue // the topic went away; keep its position
		}
		d.ends[tp] = end
		pos := d.pos[tp]
		if start := first[tp]; pos < start {
			if !d.cfg.SkipLoss {
				return nil, dataLossError(tp, pos, start)
			}
			noteLoss(d.log.With("pipeline", d.cfg.Pipeline), d.cfg.Metrics, d.cfg.Pipeline, tp, pos, start)
			pos = start
			d.pos[tp] = start
		}
		if pos > end {
			// The partition was truncated or recreated below our position:
			// never re-read, never skip silently.
			return nil, engine.Retryable(fmt.Errorf("kafka %s: position %d is past the log end %d; the topic may have been recreated", tp, pos, end))
		}
		to := end
		if limits.MaxRecordsPerPartition > 0 {
			to = min(to, pos+int64(limits.MaxRecordsPerPartition))
		}
		if d.cfg.MaxRate > 0 {
			to = min(to, pos+max(int64(elapsed.Seconds()*float64(d.cfg.MaxRate)), 1))
		}
		if to > pos {
			ranges = append(ranges, offsetRange{tp: tp, from: pos, to: to})
			backlog += to - pos
		}
	}
	if limits.MaxRecords > 0 && backlog > int64(limits.MaxRecords) {
		// Backpressure: shrink every range in proportion to its size.
		for i := range ranges {
			r := &ranges[i]
			share := (r.to - r.from) * int64(limits.MaxRecords) / backlog
			r.to = r.from + max(share, 1)
		}
	}
	if len(ranges) > 0 {
		d.lastNext = now
	}
	return ranges, nil
}

// read fetches every range in parallel and returns their records in
// partition order.
func (d *Direct) read(ctx context.Context, ranges []offsetRange) ([]engine.Record, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, maxParallelFetches)
	var wg sync.WaitGroup
	errs := make([]error, len(ranges))
	for i := range ranges {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if errs[i] = d.readRange(ctx, &ranges[i]); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, engine.Retryable(err)
	}
	n := 0
	for _, r := range ranges {
		n += len(r.records)
	}
	out := make([]engine.Record, 0, n)
	sort.Slice(ranges, func(i, j int) bool {
		a, b := ranges[i].tp, ranges[j].tp
		return a.Topic < b.Topic || (a.Topic == b.Topic && a.Partition < b.Partition)
	})
	for _, r := range ranges {
		out = append(out, r.records...)
	}
	return out, nil
}

type bytesLike interface {
	io.ReadCloser
	Len() int
}

// arenaChunk is how much key and value memory a partition's range
// allocates at once: one allocation per chunk instead of two per record.
const arenaChunk = 1 << 20

// arena hands out byte slices carved from larger chunks.
type arena struct{ buf []byte }

func (a *arena) alloc(n int) []byte {
	if n > arenaChunk/4 {
		return make([]byte, n)
	}
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, arenaChunk)
	}
	start := len(a.buf)
	a.buf = a.buf[:start+n]
	return a.buf[start : start+n : start+n]
}

func (a *arena) read(b bytesLike) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	defer b.Close()
	buf := a.alloc(b.Len())
	if _, err := io.ReadFull(b, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func discard(rec *kafkago.Record) {
	if rec.Key != nil {
		rec.Key.Close()
	}
	if rec.Value != nil {
		rec.Value.Close()
	}
}

// Committed implements engine.Source: it echoes until to the consumer
// group (for lag tools only; the sink keeps the real positions) and
// updates the lag gauges.
func (d *Direct) Committed(ctx context.Context, until engine.Positions) error {
	for tp, off := range until {
		if end, ok := d.ends[tp]; ok {
			d.cfg.Metrics.lag(d.cfg.Pipeline, tp, end-off)
		}
	}
	if d.cfg.Group == "" {
		return nil
	}
	return commitToGroup(ctx, d.client, d.cfg.Group, until)
}

// commitToGroup commits positions as the group's offsets from outside
// group management (generation -1, no member), as Kafka allows while the
// group has no members.
func commitToGroup(ctx context.Context, client *kafkago.Client, group string, at engine.Positions) error {
	req := &kafkago.OffsetCommitRequest{GroupID: group, GenerationID: -1,
		Topics: map[string][]kafkago.OffsetCommit{}}
	for tp, off := range at {
		req.Topics[tp.Topic] = append(req.Topics[tp.Topic], kafkago.OffsetCommit{Partition: int(tp.Partition), Offset: off})
	}
	resp, err := client.OffsetCommit(ctx, req)
	if err != nil {
		return fmt.Errorf("echo positions to group %s: %w", group, err)
	}
	for topic, parts := range resp.Topics {
		for _, p := range parts {
			if p.Error != nil {
				return fmt.Errorf("echo positions to group %s (%s/%d): %w", group, topic, p.Partition, p.Error)
			}
		}
	}
	return nil
}

// Close implements engine.Source.
func (d *Direct) Close() error {
	closeIdle(d.client)
	return nil
}

// closeIdle closes the idle connections a client's transport keeps.
func closeIdle(client *kafkago.Client) {
	if client == nil {
		return
	}
	if t, ok := client.Transport.(*kafkago.Transport); ok {
		t.CloseIdleConnections()
	}
}
