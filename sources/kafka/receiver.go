package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkaconn"
	"github.com/sluicehq/sluice/internal/wal"
)

const (
	// maxBlockRecords cuts a block early, so one block's memory is bounded
	// however fast records arrive.
	maxBlockRecords = 100_000
	// maxQueuedRecords bounds what a receiver without a write-ahead log
	// holds in memory; the reader waits when it is full.
	maxQueuedRecords = 1_000_000
	// readerMaxBytes is what the group consumer asks for per partition and
	// fetch; readerMaxFetchBytes bounds a whole fetch response, and with it
	// what the client buffers per broker.
	readerMaxBytes      = 8 << 20
	readerMaxFetchBytes = 32 << 20
)

// walPartition is the position key of receiver mode with a write-ahead
// log: the next log sequence to hand out.
var walPartition = engine.TopicPartition{Topic: "_wal", Partition: 0}

// ReceiverConfig configures a receiver-mode source.
type ReceiverConfig struct {
	Conn          Connection
	Topics        []string
	Pattern       string // a regular expression over topic names, instead of Topics
	Start         string // earliest | latest: where a group with no offsets starts
	Group         string
	BlockInterval time.Duration
	MaxRate       int64 // records/s per partition; 0 = unlimited
	// WALDir is the write-ahead log's directory; "" = no write-ahead log
	// (at-least-once or at-most-once only).
	WALDir   string
	SkipLoss bool // on-data-loss: skip (true) or fail
	Delivery engine.Delivery
	Pipeline string
	Logger   *slog.Logger
	Metrics  *Metrics
}

// Receiver is the receiver-mode source (engine.Source): a franz-go group
// consumer polled in the background, cutting blocks every BlockInterval.
//
// It reads read_committed, so records of aborted transactions and
// transaction markers never reach a block. Rebalances are blocked from the
// first poll of a block until that block is in the write-ahead log and its
// offsets are committed to the group: when partitions are revoked or lost,
// the receiver holds nothing it has polled but not logged, and the next
// owner starts right after what the log holds.
//
// franz-go does not reset a partition whose position retention deleted:
// where it resumes is checked against the log start when it is assigned,
// and an OFFSET_OUT_OF_RANGE while reading comes back to the receiver, so
// on-data-loss decides both, as in direct mode.
type Receiver struct {
	cfg          ReceiverConfig
	log          *slog.Logger
	pattern      *regexp.Regexp
	refreshEvery time.Duration // metadata refresh: new topics and partitions

	cl      *kgo.Client
	connErr *lastConnectError
	wal     *wal.WAL
	cancel  context.CancelFunc
	done    chan struct{}

	// gmu guards what the poll loop shares with franz-go's group callbacks
	// and with Committed. Only the loop writes logged.
	gmu     sync.Mutex
	logged  engine.Positions                          // highest offset per partition in the log
	pending map[engine.TopicPartition]kgo.EpochOffset // logged, group commit not yet acknowledged
	ends    engine.Positions                          // last stable offset per partition, from fetches
	// at is where each partition reads next, where known: the position
	// it was assigned at (a group commit or past the log), then after
	// its latest polled record. Missing: started by the start policy and
	// nothing polled yet.
	at engine.Positions

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced when readable grows or err is set
	readable int64         // WAL: sequences below this may be handed out
	pos      int64         // WAL: next sequence to hand out
	queue    []engine.Record
	next     engine.Positions // next Kafka offset per partition handed out
	err      error
}

// NewReceiver returns a receiver-mode source; it starts reading on Open.
func NewReceiver(cfg ReceiverConfig) (*Receiver, error) {
	if cfg.Group == "" {
		return nil, errors.New("kafka receiver mode needs a group")
	}
	if cfg.WALDir == "" && cfg.Delivery == engine.ExactlyOnce {
		return nil, errors.New("kafka receiver mode without a write-ahead log cannot replay a batch; set wal: true, or delivery: at-least-once")
	}
	if cfg.BlockInterval <= 0 {
		cfg.BlockInterval = 200 * time.Millisecond
	}
	r := &Receiver{cfg: cfg, log: cfg.Logger, refreshEvery: metadataRefresh}
	if cfg.Pattern != "" {
		re, err := regexp.Compile("^(?:" + cfg.Pattern + ")$")
		if err != nil {
			return nil, fmt.Errorf("kafka pattern %q: %w", cfg.Pattern, err)
		}
		r.pattern = re
	} else if len(cfg.Topics) == 0 {
		return nil, errors.New("kafka: list topics or give a pattern")
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.log = r.log.With("pipeline", cfg.Pipeline)
	return r, nil
}

// Open implements engine.Source. With a write-ahead log it resumes at the
// log sequence the sink committed; without one the group's offsets say
// where reading resumes and from is ignored.
func (r *Receiver) Open(ctx context.Context, from engine.Positions) (err error) {
	r.changed = make(chan struct{})
	r.err, r.queue, r.next = nil, nil, engine.Positions{}
	r.logged, r.pending, r.ends = engine.Positions{}, map[engine.TopicPartition]kgo.EpochOffset{}, engine.Positions{}
	r.at = engine.Positions{}
	if r.cfg.WALDir != "" {
		w, err := wal.Open(r.cfg.WALDir)
		if err != nil {
			return fmt.Errorf("receiver write-ahead log: %w", err)
		}
		start, end := w.Bounds()
		pos, ok := from[walPartition]
		if !ok {
			pos = start
		}
		if pos < start || pos > end {
			w.Close()
			return fmt.Errorf("the sink resumes at write-ahead log sequence %d but %s holds %d..%d; the data directory does not belong to this sink's state: restore it, or point the sink somewhere new",
				pos, r.cfg.WALDir, start, end)
		}
		r.wal, r.pos, r.readable = w, pos, end
		// Records in the log whose group commit may not have happened (a
		// crash between fsync and commit) must not be logged twice: each
		// assigned partition starts after what the log holds.
		r.logged = w.MaxOffsets()
		defer func() {
			if err != nil {
				r.wal.Close()
				r.wal = nil
			}
		}()
	}
	opts, err := r.cfg.Conn.kgoOpts("sluice-"+r.cfg.Pipeline, r.log)
	if err != nil {
		return err
	}
	start := kgo.NewOffset().AtStart()
	if r.cfg.Start == "latest" {
		start = kgo.NewOffset().AtEnd()
	}
	r.connErr = &lastConnectError{}
	// The group may assign partitions before NewClient returns and r.cl
	// is set.
	self := &newClient{}
	opts = append(opts,
		kgo.WithHooks(r.connErr, self),
		kgo.ConsumerGroup(r.cfg.Group),
		kgo.ConsumeStartOffset(start),
		// Retention deleted what the group had not read: the fetch
		// fails with OFFSET_OUT_OF_RANGE instead of franz-go moving on
		// silently, and on-data-loss decides (fetchError).
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		// Drop aborted transactions' records and markers, and stop at the
		// last stable offset until open transactions are decided.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(r.cfg.BlockInterval),
		kgo.FetchMaxPartitionBytes(readerMaxBytes),
		kgo.FetchMaxBytes(readerMaxFetchBytes),
		// New topics matching a pattern, and new partitions, are found by
		// the periodic metadata refresh; the group rebalances to take them.
		kgo.MetadataMaxAge(r.refreshEvery),
		kgo.MetadataMinAge(min(r.refreshEvery, 5*time.Second)),
		// Offsets are committed by the receiver, only for what the
		// write-ahead log holds, and rebalances wait until the polled
		// records are logged and committed.
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(r.revoked),
		kgo.OnPartitionsLost(r.lost),
		kgo.AdjustFetchOffsetsFn(func(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
			return r.startPositions(ctx, self.cl, offsets)
		}),
	)
	if r.pattern != nil {
		opts = append(opts, kgo.ConsumeTopics(r.pattern.String()), kgo.ConsumeRegex())
	} else {
		opts = append(opts, kgo.ConsumeTopics(r.cfg.Topics...))
	}
	if r.cl, err = kgo.NewClient(opts...); err != nil {
		return fmt.Errorf("kafka receiver: %w", err)
	}
	if err := r.checkTopics(ctx); err != nil {
		r.cl.CloseAllowingRebalance()
		r.cl = nil
		return err
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go r.loop(loopCtx)
	return nil
}

// checkTopics makes sure listed topics exist: a group consumer started on
// a missing topic would wait without saying why. A pattern may match
// nothing yet; topics are picked up as they appear.
func (r *Receiver) checkTopics(ctx context.Context) error {
	if r.pattern != nil {
		return nil
	}
	req := kmsg.NewPtrMetadataRequest()
	for _, name := range r.cfg.Topics {
		t := kmsg.NewMetadataRequestTopic()
		t.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, t)
	}
	// franz-go retries failed connections (SASL included) until ctx ends.
	ctx, cancel := context.WithTimeout(ctx, kafkaconn.DialTimeout)
	defer cancel()
	resp, err := req.RequestWith(ctx, r.cl)
	if err != nil {
		if cerr := r.connErr.get(); cerr != nil {
			err = fmt.Errorf("%w; connecting: %w", err, cerr)
		}
		return engine.Retryable(fmt.Errorf("kafka metadata: %w", err))
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			name := ""
			if t.Topic != nil {
				name = *t.Topic
			}
			return engine.Retryable(fmt.Errorf("kafka topic %s: %w; create it (sluice topic create %s) or fix the topic name", name, err, name))
		}
	}
	return nil
}

// startPositions runs when partitions are assigned, with the group's
// committed offsets: a partition whose records the log already holds
// starts after them, and the group is moved there with the next commit.
// A partition that would resume below its log start lost records to
// retention, and on-data-loss decides: fail leaves it unread and fails the
// receiver, skip starts it at the log start.
func (r *Receiver) startPositions(ctx context.Context, cl *kgo.Client, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	resume := engine.Positions{}
	r.gmu.Lock()
	for topic, parts := range offsets {
		for p, o := range parts {
			tp := engine.TopicPartition{Topic: topic, Partition: p}
			// Negative: no commit.
			at := o.EpochOffset().Offset
			if last, ok := r.logged[tp]; ok && at <= last {
				at = last + 1
				parts[p] = kgo.NewOffset().At(at)
				if _, ok := r.pending[tp]; !ok {
					r.pending[tp] = kgo.EpochOffset{Epoch: -1, Offset: at}
				}
				r.log.Debug("partition starts after what the write-ahead log holds", "partition", tp.String(), "offset", at)
			}
			if at < 0 {
				// Nothing committed or logged: the start policy
				// applies, and nothing can have been lost.
				delete(r.at, tp)
				continue
			}
			resume[tp] = at
			r.at[tp] = at
		}
	}
	r.gmu.Unlock()
	if len(resume) == 0 {
		return offsets, nil
	}
	starts, err := logStarts(ctx, cl, resume)
	if err != nil {
		// The session ends and franz-go joins again; until then no
		// partition is read from a position that was not checked.
		r.log.Warn("log start offsets of assigned partitions not listed; joining the group again", "err", err)
		return nil, err
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
			delete(r.pending, tp)
			r.gmu.Unlock()
			r.fail(dataLossError(tp, from, start))
			continue
		}
		noteLoss(r.log, r.cfg.Metrics, r.cfg.Pipeline, tp, from, start)
		offsets[tp.Topic][tp.Partition] = kgo.NewOffset().At(start)
		r.skipped(tp, start)
	}
	return offsets, nil
}

// skipped records that tp goes on at start after a loss. With a log, the
// group is moved there with the next commit, so a restart before the
// partition's next record does not count the loss again.
func (r *Receiver) skipped(tp engine.TopicPartition, start int64) {
	r.gmu.Lock()
	defer r.gmu.Unlock()
	r.at[tp] = start
	if r.cfg.WALDir != "" {
		r.pending[tp] = kgo.EpochOffset{Epoch: -1, Offset: start}
	}
}

// logStarts lists the log start offsets of the partitions in tps.
func logStarts(ctx context.Context, cl *kgo.Client, tps engine.Positions) (engine.Positions, error) {
	var topics []string
	for tp := range tps {
		if !slices.Contains(topics, tp.Topic) {
			topics = append(topics, tp.Topic)
		}
	}
	listed, err := kadm.NewClient(cl).ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("kafka list offsets: %w", err)
	}
	starts := engine.Positions{}
	for tp := range tps {
		o, ok := listed.Lookup(tp.Topic, tp.Partition)
		if !ok {
			return nil, fmt.Errorf("kafka list offsets: %s not listed", tp)
		}
		if o.Err != nil {
			return nil, fmt.Errorf("kafka list offsets of %s: %w", tp, o.Err)
		}
		starts[tp] = o.Offset
	}
	return starts, nil
}

// revoked runs before partitions go to another member. Everything polled
// is logged by then (rebalances wait for the block), so committing the
// logged offsets hands the partitions over exactly after the log.
func (r *Receiver) revoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	if err := r.commitPending(ctx, revoked); err != nil {
		r.log.Warn("group offsets of revoked partitions not committed; their next owner re-reads what this receiver logged", "err", err)
	}
	r.dropPending(revoked)
}

// lost runs when the group session ended without a chance to commit: the
// partitions may already be someone else's, so nothing is committed for
// them. If they come back, the log's offsets still skip what it holds.
func (r *Receiver) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	if n := r.dropPending(lost); n > 0 {
		r.log.Warn("group session lost before the group offsets of logged records were committed", "partitions", n)
	}
}

// commitPending commits the pending offsets of the partitions in only
// (nil: all) and forgets those that did not change meanwhile.
func (r *Receiver) commitPending(ctx context.Context, only map[string][]int32) error {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	r.gmu.Lock()
	for tp, eo := range r.pending {
		if only != nil && !contains(only, tp) {
			continue
		}
		if offsets[tp.Topic] == nil {
			offsets[tp.Topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[tp.Topic][tp.Partition] = eo
	}
	r.gmu.Unlock()
	if len(offsets) == 0 {
		return nil
	}
	if err := r.commit(ctx, offsets); err != nil {
		return err
	}
	r.gmu.Lock()
	defer r.gmu.Unlock()
	for topic, parts := range offsets {
		for p, eo := range parts {
			tp := engine.TopicPartition{Topic: topic, Partition: p}
			if r.pending[tp] == eo {
				delete(r.pending, tp)
			}
		}
	}
	return nil
}

func (r *Receiver) dropPending(tps map[string][]int32) int {
	r.gmu.Lock()
	defer r.gmu.Unlock()
	n := 0
	for tp := range r.pending {
		if contains(tps, tp) {
			delete(r.pending, tp)
			n++
		}
	}
	return n
}

func contains(tps map[string][]int32, tp engine.TopicPartition) bool {
	for _, p := range tps[tp.Topic] {
		if p == tp.Partition {
			return true
		}
	}
	return false
}

// commit commits offsets as this group member and fails on any
// partition's error.
func (r *Receiver) commit(ctx context.Context, offsets map[string]map[int32]kgo.EpochOffset) error {
	var err error
	r.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, rerr error) {
		if rerr != nil {
			err = rerr
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil && err == nil {
					err = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, perr)
				}
			}
		}
	})
	if err != nil {
		return fmt.Errorf("commit offsets of group %s: %w", r.cfg.Group, err)
	}
	return nil
}

// loop polls the group continuously and stores a block every
// BlockInterval, or sooner when it reaches maxBlockRecords.
func (r *Receiver) loop(ctx context.Context) {
	defer close(r.done)
	budget := int64(0) // per partition and block, from max-rate
	if r.cfg.MaxRate > 0 {
		budget = max(int64(float64(r.cfg.MaxRate)*r.cfg.BlockInterval.Seconds()), 1)
	}
	var block []*kgo.Record
	counts := map[engine.TopicPartition]int64{}
	paused := map[string][]int32{} // partitions at their budget until the next block
	cut := time.Now().Add(r.cfg.BlockInterval)
	wait := time.NewTimer(r.cfg.BlockInterval)
	defer wait.Stop()
	for {
		if !r.full() {
			n := maxBlockRecords - len(block)
			if budget > 0 {
				// No poll may take a partition past its budget.
				most := int64(0)
				for tp, c := range counts {
					if !contains(paused, tp) {
						most = max(most, c)
					}
				}
				n = min(n, int(budget-most))
			}
			pollCtx, cancel := context.WithDeadline(ctx, cut)
			fetches := r.cl.PollRecords(pollCtx, n)
			cancel()
			if ctx.Err() != nil || r.failed() {
				// Failed while assigning partitions: nothing more is
				// logged or committed.
				return
			}
			if err := r.fetchError(ctx, fetches); err != nil {
				if errors.Is(err, ErrDataLoss) {
					// What was polled before the gap is read: logged and
					// committed, the group resumes where the error's
					// range begins.
					if serr := r.store(ctx, block); serr != nil {
						err = errors.Join(err, serr)
					}
				}
				if ctx.Err() == nil {
					r.fail(err)
				}
				return
			}
			pause := map[string][]int32{}
			r.gmu.Lock()
			fetches.EachPartition(func(p kgo.FetchTopicPartition) {
				if len(p.Records) == 0 {
					return
				}
				tp := engine.TopicPartition{Topic: p.Topic, Partition: p.Partition}
				r.ends[tp] = p.LastStableOffset
				r.at[tp] = p.Records[len(p.Records)-1].Offset + 1
				block = append(block, p.Records...)
				counts[tp] += int64(len(p.Records))
				if budget > 0 && counts[tp] >= budget && !contains(paused, tp) {
					paused[p.Topic] = append(paused[p.Topic], p.Partition)
					pause[p.Topic] = append(pause[p.Topic], p.Partition)
				}
			})
			r.gmu.Unlock()
			if len(pause) > 0 {
				// Whatever the client buffered for them is dropped and
				// fetched again after the block.
				r.cl.PauseFetchPartitions(pause)
			}
			if len(block) < maxBlockRecords && time.Now().Before(cut) {
				continue
			}
		} else {
			// Without a log, wait for batches to take the queue down.
			wait.Reset(time.Until(cut))
			select {
			case <-ctx.Done():
				return
			case <-wait.C:
			}
		}
		if err := r.store(ctx, block); err != nil {
			if ctx.Err() == nil {
				r.fail(err)
			}
			return
		}
		clear(block)
		block = block[:0]
		clear(counts)
		if len(paused) > 0 {
			r.cl.ResumeFetchPartitions(paused)
			clear(paused)
		}
		// Nothing polled is held now: a rebalance may go ahead.
		r.cl.AllowRebalance()
		cut = time.Now().Add(r.cfg.BlockInterval)
	}
}

// fetchError returns what a poll reports that the receiver cannot go on
// from; the rest franz-go recovers from itself and is logged, and a
// partition that fell behind retention goes by on-data-loss.
func (r *Receiver) fetchError(ctx context.Context, fetches kgo.Fetches) error {
	var behind []engine.TopicPartition
	for _, fe := range fetches.Errors() {
		var session *kgo.ErrGroupSession
		var loss *kgo.ErrDataLoss
		switch {
		case errors.Is(fe.Err, context.DeadlineExceeded), errors.Is(fe.Err, context.Canceled):
			// The block's deadline, or Close.
		case errors.Is(fe.Err, kerr.OffsetOutOfRange):
			behind = append(behind, engine.TopicPartition{Topic: fe.Topic, Partition: fe.Partition})
		case errors.As(fe.Err, &loss):
			// The broker lost records (an unclean leader election), not
			// retention: franz-go resumes where the logs diverged.
			r.log.Warn("records lost, reading on from where the broker has them", "partition", fmt.Sprintf("%s/%d", fe.Topic, fe.Partition), "err", fe.Err)
		case errors.As(fe.Err, &session):
			r.log.Warn("consumer group session ended; rejoining", "group", r.cfg.Group, "err", fe.Err)
		default:
			return engine.Retryable(fmt.Errorf("kafka receiver %s/%d: %w", fe.Topic, fe.Partition, fe.Err))
		}
	}
	if len(behind) == 0 {
		return nil
	}
	return r.outOfRange(ctx, behind)
}

// outOfRange handles partitions whose fetch position is no longer in the
// log. Below the log start, retention deleted records the receiver had not
// read: fail returns the error, skip moves the partition to the log start.
// It runs on the polling goroutine before AllowRebalance, where franz-go
// wants SetOffsets called.
func (r *Receiver) outOfRange(ctx context.Context, tps []engine.TopicPartition) error {
	adm := kadm.NewClient(r.cl)
	var topics []string
	for _, tp := range tps {
		if !slices.Contains(topics, tp.Topic) {
			topics = append(topics, tp.Topic)
		}
	}
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
		from, known := r.at[tp]
		r.gmu.Unlock()
		to := start.Offset
		switch {
		case !known:
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

func (r *Receiver) full() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue) >= maxQueuedRecords
}

// store makes a block available: with a write-ahead log, append + fsync,
// then commit the group offsets, then let batches see it; without one,
// queue it (at-most-once commits the group offsets first).
func (r *Receiver) store(ctx context.Context, block []*kgo.Record) error {
	recs := make([]engine.Record, 0, len(block))
	last := map[engine.TopicPartition]kgo.EpochOffset{}
	for _, m := range block {
		tp := engine.TopicPartition{Topic: m.Topic, Partition: m.Partition}
		last[tp] = kgo.EpochOffset{Epoch: m.LeaderEpoch, Offset: m.Offset + 1}
		if off, ok := r.logged[tp]; ok && m.Offset <= off {
			continue // already in the write-ahead log
		}
		rec := engine.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
			Key: m.Key, Value: m.Value, Time: m.Timestamp}
		for _, h := range m.Headers {
			rec.Headers = append(rec.Headers, engine.Header{Key: h.Key, Value: h.Value})
		}
		recs = append(recs, rec)
	}
	if r.wal != nil {
		end := int64(-1)
		if len(recs) > 0 {
			var err error
			if end, err = r.wal.Append(recs); err != nil {
				return fmt.Errorf("receiver write-ahead log: %w", err)
			}
		}
		r.gmu.Lock()
		for _, rec := range recs {
			r.logged[engine.TopicPartition{Topic: rec.Topic, Partition: rec.Partition}] = rec.Offset
		}
		for tp, eo := range last {
			r.pending[tp] = eo
		}
		r.gmu.Unlock()
		// The log holds the block: a failed commit is retried with the
		// next block or when the partition is revoked, and until then a
		// restarted receiver skips what the log holds.
		if err := r.commitPending(ctx, nil); err != nil && ctx.Err() == nil {
			r.log.Warn("group offsets not committed after the write-ahead log; retrying with the next block", "err", err)
		}
		if end >= 0 {
			r.publish(func() { r.readable = end })
		}
		return nil
	}
	if r.cfg.Delivery == engine.AtMostOnce && len(last) > 0 {
		if err := r.commit(ctx, groupOffsets(last)); err != nil {
			return engine.Retryable(err)
		}
	}
	if len(recs) > 0 {
		r.publish(func() { r.queue = append(r.queue, recs...) })
	}
	return nil
}

func groupOffsets(at map[engine.TopicPartition]kgo.EpochOffset) map[string]map[int32]kgo.EpochOffset {
	out := map[string]map[int32]kgo.EpochOffset{}
	for tp, eo := range at {
		if out[tp.Topic] == nil {
			out[tp.Topic] = map[int32]kgo.EpochOffset{}
		}
		out[tp.Topic][tp.Partition] = eo
	}
	return out
}

func (r *Receiver) publish(change func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	change()
	close(r.changed)
	r.changed = make(chan struct{})
}

// fail keeps the first error: the one that stopped the receiver.
func (r *Receiver) fail(err error) {
	r.publish(func() {
		if r.err == nil {
			r.err = err
		}
	})
}

func (r *Receiver) failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err != nil
}

// Next implements engine.Source: the records received since the last
// batch, up to the limits.
func (r *Receiver) Next(ctx context.Context, limits engine.Limits) ([]engine.Record, engine.Positions, error) {
	deadline := time.NewTimer(limits.Wait)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		err, changed := r.err, r.changed
		avail := r.readable - r.pos
		if r.wal == nil {
			avail = int64(len(r.queue))
		}
		r.mu.Unlock()
		if err != nil {
			return nil, nil, err
		}
		if avail > 0 {
			return r.take(avail, limits)
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-deadline.C:
			return nil, r.positions(), nil
		case <-changed:
		}
	}
}

func (r *Receiver) take(avail int64, limits engine.Limits) ([]engine.Record, engine.Positions, error) {
	n := avail
	if limits.MaxRecords > 0 {
		n = min(n, int64(limits.MaxRecords))
	}
	if limits.MaxRecordsPerPartition > 0 {
		n = min(n, int64(limits.MaxRecordsPerPartition))
	}
	if r.wal != nil {
		recs, err := r.wal.Read(r.pos, int(n))
		if err != nil {
			return nil, nil, fmt.Errorf("receiver write-ahead log: %w", err)
		}
		r.pos += int64(len(recs))
		r.noteNext(recs)
		return recs, r.positions(), nil
	}
	r.mu.Lock()
	recs := r.queue[:n:n]
	r.queue = r.queue[n:]
	r.mu.Unlock()
	r.noteNext(recs)
	return recs, r.positions(), nil
}

func (r *Receiver) noteNext(recs []engine.Record) {
	for _, rec := range recs {
		r.next[engine.TopicPartition{Topic: rec.Topic, Partition: rec.Partition}] = rec.Offset + 1
	}
}

// reportLag sets the lag gauges: per partition, the records between what
// was handed to the sink and the partition's last stable offset as of the
// latest fetch.
func (r *Receiver) reportLag() {
	if r.cfg.Metrics == nil {
		return
	}
	r.gmu.Lock()
	defer r.gmu.Unlock()
	for tp, next := range r.next {
		if end, ok := r.ends[tp]; ok {
			r.cfg.Metrics.lag(r.cfg.Pipeline, tp, end-next)
		}
	}
}

func (r *Receiver) positions() engine.Positions {
	if r.wal != nil {
		return engine.Positions{walPartition: r.pos}
	}
	return r.next.Clone()
}

// Committed implements engine.Source: the write-ahead log is trimmed below
// what the sink committed; without a log, at-least-once commits the group
// offsets now.
func (r *Receiver) Committed(ctx context.Context, until engine.Positions) error {
	r.reportLag()
	if r.wal != nil {
		return r.wal.Trim(until[walPartition])
	}
	if r.cfg.Delivery != engine.AtLeastOnce || len(until) == 0 {
		return nil
	}
	at := map[engine.TopicPartition]kgo.EpochOffset{}
	for tp, off := range until {
		at[tp] = kgo.EpochOffset{Epoch: -1, Offset: off}
	}
	return r.commit(ctx, groupOffsets(at))
}

// Close implements engine.Source: it stops reading and leaves the group,
// committing what the log holds on the way out.
func (r *Receiver) Close() error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	<-r.done
	// Leaving revokes every partition; revoked commits the logged offsets.
	r.cl.CloseAllowingRebalance()
	r.cl = nil
	var err error
	if r.wal != nil {
		err = r.wal.Close()
		r.wal = nil
	}
	r.cancel = nil
	return err
}

// newClient keeps the client it is a hook of, from before the client's
// goroutines start.
type newClient struct{ cl *kgo.Client }

func (h *newClient) OnNewClient(cl *kgo.Client) { h.cl = cl }

// lastConnectError keeps the outcome of the latest connection attempt
// (dial, TLS, SASL), which franz-go retries without returning it.
type lastConnectError struct {
	mu  sync.Mutex
	err error
}

func (h *lastConnectError) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.err = err
}

func (h *lastConnectError) get() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}
