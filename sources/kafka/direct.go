package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/engine"
)

const (
	// defaultAheadRecords is what a partition keeps fetched ahead when
	// batches have no per-partition limit.
	defaultAheadRecords = 50_000
	// fetchMaxPartitionBytes is what one fetch asks for per partition and
	// fetchMaxBytes what it asks for in all: the client keeps one fetch
	// response per broker buffered while the pipeline works, so these
	// bound the read-ahead memory per broker, whatever the volume.
	fetchMaxPartitionBytes = 1 << 20
	fetchMaxBytes          = 16 << 20
	// fetchMaxWait bounds a fetch's long poll: how long the broker holds a
	// fetch of a caught-up partition before answering empty.
	fetchMaxWait = 500 * time.Millisecond
	// stallTimeout is how long a batch waits for records its partitions'
	// listed ends say exist before it re-lists them and, if they still do,
	// fails the batch (retried): a broker that lists records it never
	// serves would otherwise hang the pipeline.
	stallTimeout = 10 * time.Second
	// metadataRefresh is how often partitions are rediscovered (new
	// partitions, new topics matching a pattern).
	metadataRefresh = 10 * time.Second
)

// DirectConfig configures a direct-mode source.
type DirectConfig struct {
	Conn    Connection
	Topics  []string
	Pattern string // a regular expression over topic names, instead of Topics
	Start   string // earliest | latest, when the sink has no positions
	Group   string // positions are echoed here after each commit, for lag tools
	// Tasks is this process's membership in the pipeline's task group,
	// for a pipeline split into tasks (OpenTasks); positions are then
	// echoed through it instead of to Group.
	Tasks    *Group
	MaxRate  int64 // records/s per partition; 0 = unlimited
	SkipLoss bool  // on-data-loss: skip (true) or fail
	// SkipCorrupt is on-corrupt: skip (true) or fail.
	SkipCorrupt bool
	// Trim deletes the records before the committed positions
	// (DeleteRecords) after commits: for an internal topic only this
	// pipeline reads (a repartition's), so it does not grow forever.
	Trim     bool
	Pipeline string
	Logger   *slog.Logger
	Metrics  *Metrics
}

// Direct is the direct-mode source (engine.Source), as in Spark Streaming's
// direct Kafka stream: no consumer group; the positions the sink stores are
// the only offsets that matter.
//
// It reads through one franz-go client that consumes the partitions from
// the positions it was opened at, fetching and decoding in the background
// while the pipeline transforms and commits (read_committed: records of
// aborted transactions never arrive; transaction markers arrive as control
// records and only move positions). Each batch is cut as Spark cuts one:
// per partition, from the position up to the end last listed, bounded by
// the batch limits. Records fetched past a batch's cut are kept for the
// next batch, never fetched twice.
type Direct struct {
	// Set by NewDirect (and tests before Open); read-only afterwards.
	cfg          DirectConfig
	pattern      *regexp.Regexp
	log          *slog.Logger
	refreshEvery time.Duration
	stallAfter   time.Duration // stallTimeout; tests shorten it

	// Everything below is owned by the Source methods, which the engine
	// never calls concurrently, so no field has a lock. Direct starts no
	// goroutine and registers no franz-go callback: the client's own
	// goroutines fetch into its buffers, which only Next polls.
	cl  *kgo.Client
	adm *kadm.Client

	parts     map[engine.TopicPartition]*partition // the partitions read
	only      map[engine.Task]bool                 // the tasks read (OpenTasks); nil = every partition
	partial   bool                                 // some partition of the topics belongs to a task not read here
	buf       recordBuffer                         // a slice the engine handed back, for the next batch
	pos       engine.Positions                     // next offset per partition, also of unsubscribed ones
	listed    bool                                 // ends have been listed at least once since Open
	refreshed time.Time                            // when partitions were last discovered
	lastNext  time.Time                            // when the last batch with records was planned (max-rate)
	gauged    map[engine.TopicPartition]bool       // partitions with a lag series set by this source
	// skips are batches on-corrupt: skip stepped over during a poll,
	// passed over once the poll's records are absorbed.
	skips []skipTo
	// trimmed is where each partition was last trimmed to (Trim), and
	// trimAt when; both survive reopening, as the topic does.
	trimmed map[engine.TopicPartition]int64
	trimAt  time.Time
	// aheadLimit is how many records a partition keeps fetched ahead
	// before its fetching pauses: one batch's share, so what is fetched
	// ahead stays within the batch settings whatever the volume.
	aheadLimit int
}

// partition is one partition being read.
type partition struct {
	tp  engine.TopicPartition
	end int64 // last stable offset, as last listed or fetched
	// ahead holds what was fetched past the current batch's cut, in
	// offset order, for the next batch.
	ahead []fetched
	// target is where the batch being cut stops reading this partition.
	target int64
	// paused: ahead is full, so the client does not fetch this partition
	// (franz-go fetches a paused partition's stripped records again once
	// it resumes, from right after what was taken).
	paused bool
}

// fetched is a record, or a transaction marker that only takes an offset.
type fetched struct {
	rec     engine.Record
	control bool
	// skipTo marks a batch on-corrupt: skip stepped over, from rec.Offset
	// up to skipTo: it only moves the position (corrupt.go).
	skipTo int64
}

// NewDirect returns a direct-mode source; it connects on Open.
func NewDirect(cfg DirectConfig) (*Direct, error) {
	d := &Direct{cfg: cfg, log: cfg.Logger, refreshEvery: metadataRefresh, stallAfter: stallTimeout}
	if d.log == nil {
		d.log = slog.Default()
	}
	d.log = d.log.With("pipeline", cfg.Pipeline)
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
	d.only = nil
	return d.open(ctx, from)
}

// OpenTasks implements engine.TaskSource: Open, reading only the
// partitions of tasks.
func (d *Direct) OpenTasks(ctx context.Context, tasks []engine.Task, from engine.Positions) error {
	if d.cfg.Tasks == nil {
		return errNoGroup
	}
	d.only = map[engine.Task]bool{}
	for _, t := range tasks {
		d.only[t] = true
	}
	// A partition of a task that moved to another process is that
	// process's to report.
	for tp := range d.gauged {
		if !d.only[engine.TaskOf(tp)] {
			d.cfg.Metrics.forget(d.cfg.Pipeline, tp)
			delete(d.gauged, tp)
		}
	}
	return d.open(ctx, from)
}

func (d *Direct) open(ctx context.Context, from engine.Positions) error {
	opts, err := d.cfg.Conn.kgoOpts("sluice-"+d.cfg.Pipeline, d.log)
	if err != nil {
		return err
	}
	opts = append(opts,
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Markers take offsets; seeing them lets a batch end past them.
		kgo.KeepControlRecords(),
		// Retention overtaking a position is on-data-loss's to decide.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.FetchMaxBytes(fetchMaxBytes),
		kgo.FetchMaxPartitionBytes(fetchMaxPartitionBytes),
		kgo.FetchMaxWait(fetchMaxWait),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	d.cl, d.adm = cl, kadm.NewClient(cl)
	d.parts = map[engine.TopicPartition]*partition{}
	d.pos = from.Clone()
	if d.pos == nil {
		d.pos = engine.Positions{}
	}
	d.listed = false
	d.lastNext = time.Now()
	if err := d.refresh(ctx, d.cfg.Start); err != nil {
		return err
	}
	return d.listEnds(ctx)
}

// refresh looks for partitions not read yet and starts reading them: at
// their stored position, or else at start (the pipeline's policy on Open;
// earliest for partitions that appear later, so nothing written to them
// is missed).
func (d *Direct) refresh(ctx context.Context, start string) error {
	topics, err := d.topics(ctx)
	if err != nil {
		return err
	}
	var fresh []engine.TopicPartition
	d.partial = false
	for _, t := range topics {
		for _, p := range t.partitions {
			tp := engine.TopicPartition{Topic: t.topic, Partition: p}
			if d.only != nil && !d.only[engine.TaskOf(tp)] {
				d.partial = true
				continue
			}
			if d.parts[tp] == nil {
				fresh = append(fresh, tp)
			}
		}
	}
	d.refreshed = time.Now()
	if len(fresh) == 0 {
		return nil
	}
	var unplaced []engine.TopicPartition
	for _, tp := range fresh {
		if _, ok := d.pos[tp]; !ok {
			unplaced = append(unplaced, tp)
		}
	}
	if len(unplaced) > 0 {
		list := d.adm.ListStartOffsets
		if start == "latest" {
			list = d.adm.ListCommittedOffsets
		}
		at, err := listOffsets(ctx, list, unplaced)
		if err != nil {
			return err
		}
		for _, tp := range unplaced {
			d.pos[tp] = at[tp]
		}
	}
	add := map[string]map[int32]kgo.Offset{}
	for _, tp := range fresh {
		d.parts[tp] = &partition{tp: tp, end: d.pos[tp]}
		if add[tp.Topic] == nil {
			add[tp.Topic] = map[int32]kgo.Offset{}
		}
		add[tp.Topic][tp.Partition] = kgo.NewOffset().At(d.pos[tp])
		d.log.Info("reading partition", "partition", tp.String(), "offset", d.pos[tp])
	}
	d.cl.AddConsumePartitions(add)
	return nil
}

// topicPartitions is one subscribed topic and its partitions.
type topicPartitions struct {
	topic      string
	partitions []int32
}

// topics returns the subscribed topics that exist, with their partitions.
// It asks the brokers, not franz-go's metadata cache, so a new topic or
// partition is seen at the next refresh.
func (d *Direct) topics(ctx context.Context) ([]topicPartitions, error) {
	req := kmsg.NewPtrMetadataRequest()
	if d.pattern == nil {
		for _, name := range d.cfg.Topics {
			t := kmsg.NewMetadataRequestTopic()
			t.Topic = kmsg.StringPtr(name)
			req.Topics = append(req.Topics, t)
		}
	} // else nil Topics: every topic, for the pattern
	resp, err := req.RequestWith(ctx, d.cl)
	if err != nil {
		return nil, engine.Retryable(fmt.Errorf("kafka metadata: %w; check brokers", err))
	}
	var out []topicPartitions
	for _, t := range resp.Topics {
		var name string
		if t.Topic != nil { // nil only from brokers that name topics by ID alone
			name = *t.Topic
		}
		err := kerr.ErrorForCode(t.ErrorCode)
		switch {
		case d.pattern != nil && (t.IsInternal || !d.pattern.MatchString(name)):
		case errors.Is(err, kerr.UnknownTopicOrPartition):
			if d.pattern == nil {
				return nil, engine.Retryable(fmt.Errorf("kafka topic %s does not exist; create it (sluice topic create %s) or fix the topic name", name, name))
			}
		case err != nil:
			if d.pattern == nil {
				return nil, engine.Retryable(fmt.Errorf("kafka topic %s: %w", name, err))
			}
		default:
			tp := topicPartitions{topic: name}
			for _, p := range t.Partitions {
				tp.partitions = append(tp.partitions, p.Partition)
			}
			out = append(out, tp)
		}
	}
	return out, nil
}

// listOffsets runs one of kadm's offset listings over tps.
func listOffsets(ctx context.Context, list func(context.Context, ...string) (kadm.ListedOffsets, error),
	tps []engine.TopicPartition) (engine.Positions, error) {
	set := make(engine.Positions, len(tps))
	for _, tp := range tps {
		set[tp] = 0
	}
	listed, err := list(ctx, topicsOf(set)...)
	if err != nil {
		return nil, engine.Retryable(fmt.Errorf("kafka list offsets: %w", err))
	}
	at, err := lookupAll(listed, set)
	return at, engine.Retryable(err)
}

// listEnds lists every partition's last stable offset: the end of what a
// read_committed reader may read now.
func (d *Direct) listEnds(ctx context.Context) error {
	ends, err := listOffsets(ctx, d.adm.ListCommittedOffsets, d.sortedParts())
	if err != nil {
		return err
	}
	for tp, end := range ends {
		d.parts[tp].end = end
	}
	d.listed = true
	return nil
}

func (d *Direct) sortedParts() []engine.TopicPartition {
	tps := make([]engine.TopicPartition, 0, len(d.parts))
	for tp := range d.parts {
		tps = append(tps, tp)
	}
	slices.SortFunc(tps, engine.TopicPartition.Compare)
	return tps
}

// Next implements engine.Source. The batch reads each partition from its
// position up to the end last listed (listing again when nothing is known
// to wait), bounded by the limits; when nothing waits it returns the first
// records that arrive within limits.Wait.
func (d *Direct) Next(ctx context.Context, limits engine.Limits) ([]engine.Record, engine.Positions, error) {
	if time.Since(d.refreshed) >= d.refreshEvery {
		if err := d.refresh(ctx, "earliest"); err != nil {
			return nil, nil, err
		}
	}
	if d.backlog() == 0 {
		if err := d.listEnds(ctx); err != nil {
			return nil, nil, err
		}
	}
	b := d.plan(limits)
	if b.planned == 0 {
		// Nothing known to wait: take what arrives within the wait, up
		// to the limits (arrivals raise the partitions' ends).
		if err := d.waitFor(ctx, limits.Wait); err != nil {
			return nil, nil, err
		}
		b = d.plan(limits)
	}
	if err := d.fill(ctx, b); err != nil {
		return nil, nil, err
	}
	return trimmed(b.records), d.pos.Clone(), nil
}

// Recycle implements engine.Recycler.
func (d *Direct) Recycle(records []engine.Record) { d.buf.put(records) }

// cut is the batch being read.
type cut struct {
	planned int64           // offsets from the positions to the targets
	records []engine.Record // what the batch has read
}

// plan sets each partition's target for this batch and takes what was
// fetched ahead up to it.
func (d *Direct) plan(limits engine.Limits) *cut {
	now := time.Now()
	elapsed := now.Sub(d.lastNext)
	var total int64
	for _, p := range d.parts {
		pos := d.pos[p.tp]
		to := max(p.end, pos)
		if limits.MaxRecordsPerPartition > 0 {
			to = min(to, pos+int64(limits.MaxRecordsPerPartition))
		}
		if d.cfg.MaxRate > 0 {
			to = min(to, pos+max(int64(elapsed.Seconds()*float64(d.cfg.MaxRate)), 1))
		}
		p.target = to
		total += to - pos
	}
	if limits.MaxRecords > 0 && total > int64(limits.MaxRecords) {
		// Backpressure: shrink every partition's share in proportion.
		shrunk := int64(0)
		for _, p := range d.parts {
			pos := d.pos[p.tp]
			if n := p.target - pos; n > 0 {
				p.target = pos + max(n*int64(limits.MaxRecords)/total, 1)
				shrunk += p.target - pos
			}
		}
		total = shrunk
	}
	b := &cut{planned: total, records: d.buf.get(int(total))}
	if total > 0 {
		d.lastNext = now
	}
	d.aheadLimit = defaultAheadRecords
	if limits.MaxRecordsPerPartition > 0 {
		d.aheadLimit = limits.MaxRecordsPerPartition
	}
	resume := map[string][]int32{}
	for _, tp := range d.sortedParts() {
		p := d.parts[tp]
		n := 0
		for n < len(p.ahead) && p.ahead[n].rec.Offset < p.target {
			d.take(b, p, &p.ahead[n])
			n++
		}
		p.ahead = p.ahead[n:]
		if len(p.ahead) == 0 {
			p.ahead = nil // let the backing array go
		}
		d.passGap(p)
		if p.paused && len(p.ahead) < d.aheadLimit {
			p.paused = false
			resume[tp.Topic] = append(resume[tp.Topic], tp.Partition)
		}
	}
	if len(resume) > 0 {
		d.cl.ResumeFetchPartitions(resume)
	}
	return b
}

// take hands f over to the batch and moves the position past it.
func (d *Direct) take(b *cut, p *partition, f *fetched) {
	if !f.control {
		b.records = append(b.records, f.rec)
	}
	if f.rec.Offset >= d.pos[p.tp] {
		// Past offsets the client stepped over (aborted records,
		// compacted gaps) too.
		d.pos[p.tp] = max(f.rec.Offset+1, f.skipTo)
	}
}

// passGap moves the position up to the first record kept ahead: the
// client returns a partition's records in order, so the offsets before it
// were stepped over (an aborted transaction, a compacted gap). Without it a
// gap reaching past the batch's target (an aborted transaction longer than
// a batch) would leave the batch waiting for offsets that never come.
func (d *Direct) passGap(p *partition) {
	if len(p.ahead) > 0 && p.ahead[0].rec.Offset > d.pos[p.tp] {
		d.pos[p.tp] = p.ahead[0].rec.Offset
	}
}

// wanted is how many offsets the batch still has to read up to the
// targets.
func (d *Direct) wanted() int64 {
	var n int64
	for tp, p := range d.parts {
		n += max(p.target-d.pos[tp], 0)
	}
	return n
}

// fill polls until every partition reached its target.
func (d *Direct) fill(ctx context.Context, b *cut) error {
	deadline := time.Now().Add(d.stallAfter)
	for wanted := d.wanted(); wanted > 0; wanted = d.wanted() {
		wait := time.Until(deadline)
		if wait <= 0 {
			// Nothing arrived for a long time although records were
			// listed: look again before giving up on the batch.
			if err := d.listEnds(ctx); err != nil {
				return err
			}
			stalled := d.stalled()
			if len(stalled) == 0 {
				return nil
			}
			// A batch whose records stop decoding part-way stalls its
			// partition without an error (corrupt.go).
			skipped, err := d.probeStalled(ctx, b)
			if err != nil {
				return err
			}
			if !skipped {
				return engine.Retryable(fmt.Errorf("kafka: no records arrived for %v in %v although the brokers list them; check the brokers' logs", stalled, d.stallAfter))
			}
			deadline = time.Now().Add(d.stallAfter)
			continue
		}
		fetches, err := d.poll(ctx, wait)
		if err != nil {
			return err
		}
		d.absorb(b, fetches)
		if d.wanted() < wanted {
			deadline = time.Now().Add(d.stallAfter)
		}
	}
	return nil
}

// stalled lists partitions that have not reached their target although
// their end is past it.
func (d *Direct) stalled() []string {
	var out []string
	for _, tp := range d.sortedParts() {
		p := d.parts[tp]
		if pos := d.pos[tp]; pos < p.target && pos < p.end {
			out = append(out, fmt.Sprintf("%s at %d (end %d)", tp, pos, p.end))
		}
	}
	return out
}

// waitFor waits up to wait for the first records to arrive and keeps them
// fetched ahead (plan then takes them).
func (d *Direct) waitFor(ctx context.Context, wait time.Duration) error {
	fetches, err := d.poll(ctx, wait)
	if err != nil {
		return err
	}
	for _, p := range d.parts {
		p.target = d.pos[p.tp] // all of it goes ahead, to be planned
	}
	d.absorb(&cut{}, fetches)
	return nil
}

// poll returns the next fetches, waiting up to wait (0 = only what is
// already buffered); they may hold no records.
func (d *Direct) poll(ctx context.Context, wait time.Duration) (kgo.Fetches, error) {
	var fetches kgo.Fetches
	if wait <= 0 {
		// A nil context asks franz-go for what is buffered, without waiting.
		fetches = d.cl.PollRecords(nil, 0)
	} else {
		wctx, cancel := context.WithTimeout(ctx, wait)
		fetches = d.cl.PollRecords(wctx, 0)
		cancel()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := d.fetchErrors(ctx, fetches); err != nil {
		return nil, err
	}
	return fetches, nil
}

// fetchErrors turns the errors of a poll into on-data-loss decisions or a
// retried failure; our own wait ending is not an error.
func (d *Direct) fetchErrors(ctx context.Context, fetches kgo.Fetches) error {
	var errs []error
	for _, fe := range fetches.Errors() {
		tp := engine.TopicPartition{Topic: fe.Topic, Partition: fe.Partition}
		switch {
		case errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled):
		case errors.Is(fe.Err, kerr.OffsetOutOfRange) && d.parts[tp] != nil:
			if err := d.outOfRange(ctx, tp); err != nil {
				return err
			}
		case suspect(fe.Err) && d.parts[tp] != nil:
			found, err := d.corruptAt(ctx, tp, max(d.fetchedTo(d.parts[tp]), lastFetched(fetches, tp)+1))
			if err != nil {
				return err
			}
			if !found {
				errs = append(errs, fmt.Errorf("kafka fetch %s: %w", tp, fe.Err))
			}
		default:
			errs = append(errs, fmt.Errorf("kafka fetch %s: %w", tp, fe.Err))
		}
	}
	if len(errs) > 0 {
		return engine.Retryable(errors.Join(errs...))
	}
	return nil
}

// absorb hands polled records to the batch up to each partition's target
// and keeps the rest for the next batch; it also notes the partitions'
// ends the brokers reported.
func (d *Direct) absorb(b *cut, fetches kgo.Fetches) {
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		tp := engine.TopicPartition{Topic: fp.Topic, Partition: fp.Partition}
		p := d.parts[tp]
		if p == nil {
			return // removed from the subscription; its position stays
		}
		if end := fp.LastStableOffset; end > p.end {
			p.end = end
		} else if end < 0 && fp.HighWatermark > p.end {
			p.end = fp.HighWatermark
		}
		for _, r := range fp.Records {
			f := fetched{rec: toRecord(r), control: r.Attrs.IsControl()}
			if len(p.ahead) == 0 && f.rec.Offset < p.target {
				d.take(b, p, &f)
			} else if f.rec.Offset >= d.pos[tp] {
				p.ahead = append(p.ahead, f)
			}
		}
		d.passGap(p)
		if !p.paused && len(p.ahead) >= d.aheadLimit {
			p.paused = true
			d.cl.PauseFetchPartitions(map[string][]int32{tp.Topic: {tp.Partition}})
		}
	})
	// Batches skipped (on-corrupt) come after this poll's records.
	for _, sk := range d.skips {
		if p := d.parts[sk.tp]; p != nil {
			d.passOver(b, p, sk)
		}
	}
	d.skips = d.skips[:0]
}

// toRecord converts without copying: key and value stay in the fetch
// response's (or decompressed batch's) memory, which lives as long as the
// batch's records do.
func toRecord(r *kgo.Record) engine.Record {
	rec := engine.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		Key: r.Key, Value: r.Value, Time: r.Timestamp}
	if len(r.Headers) > 0 {
		rec.Headers = make([]engine.Header, len(r.Headers))
		for i, h := range r.Headers {
			rec.Headers[i] = engine.Header{Key: h.Key, Value: h.Value}
		}
	}
	return rec
}

// backlog is how many records are known to wait past the positions.
func (d *Direct) backlog() int64 {
	var n int64
	for tp, p := range d.parts {
		n += max(p.end-d.pos[tp], 0)
	}
	return n
}

// Backlog implements engine.Backlogger: the records known to wait past the
// positions the last Next returned, as of the ends last listed or fetched.
//
// Split into tasks, the backlog is known only while this process runs
// every task: what waits in the others' is theirs to report, and a task
// whose process died waits for the group to move it here or elsewhere.
func (d *Direct) Backlog() (int64, bool) {
	if d.cl == nil || !d.listed || d.partial {
		return 0, false
	}
	return d.backlog(), true
}

// Ends implements engine.Ender: each partition's end as last listed or
// fetched.
func (d *Direct) Ends() engine.Positions {
	if d.cl == nil || !d.listed {
		return nil
	}
	out := make(engine.Positions, len(d.parts))
	for tp, p := range d.parts {
		out[tp] = p.end
	}
	return out
}

// Committed implements engine.Source: it echoes until to the consumer
// group (for lag tools only; the sink keeps the real positions) and
// updates the lag gauges.
func (d *Direct) Committed(ctx context.Context, until engine.Positions) error {
	for tp, off := range until {
		if p := d.parts[tp]; p != nil {
			d.cfg.Metrics.lag(d.cfg.Pipeline, tp, max(p.end-off, 0))
			if d.gauged == nil {
				d.gauged = map[engine.TopicPartition]bool{}
			}
			d.gauged[tp] = true
		}
	}
	if d.cfg.Trim {
		d.trim(ctx, until)
	}
	switch {
	case d.only != nil:
		return d.cfg.Tasks.Commit(ctx, until)
	case d.cfg.Group == "":
		return nil
	}
	return commitToGroup(ctx, d.adm, d.cfg.Group, until)
}

// commitToGroup commits positions as the group's offsets from outside
// group management (generation -1, no member), as Kafka allows while the
// group has no members.
func commitToGroup(ctx context.Context, adm *kadm.Client, group string, at engine.Positions) error {
	offsets := kadm.Offsets{}
	for tp, off := range at {
		offsets.AddOffset(tp.Topic, tp.Partition, off, -1)
	}
	resp, err := adm.CommitOffsets(ctx, group, offsets)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("echo positions to group %s: %w", group, err)
	}
	return nil
}

// Close implements engine.Source.
func (d *Direct) Close() error {
	if d.cl != nil {
		d.cl.Close()
		d.cl, d.adm, d.parts = nil, nil, nil
	}
	return nil
}
