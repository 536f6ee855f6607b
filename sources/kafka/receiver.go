package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/tlsconfig"
	"github.com/sluicehq/sluice/internal/wal"
)

const (
	// maxBlockRecords cuts a block early, so one block's memory is bounded
	// however fast records arrive.
	maxBlockRecords = 100_000
	// maxQueuedRecords bounds what a receiver without a write-ahead log
	// holds in memory; the reader waits when it is full.
	maxQueuedRecords = 1_000_000
	// readerMaxBytes is what the group reader asks for per fetch.
	readerMaxBytes = 8 << 20
)

// walPartition is the position key of receiver mode with a write-ahead
// log: the next log sequence to hand out.
var walPartition = engine.TopicPartition{Topic: "_wal", Partition: 0}

// ReceiverConfig configures a receiver-mode source.
type ReceiverConfig struct {
	Conn          Connection
	Topics        []string
	Pattern       string // resolved to topics on Open
	Start         string // earliest | latest: where a group with no offsets starts
	Group         string
	BlockInterval time.Duration
	MaxRate       int64 // records/s per partition; 0 = unlimited
	// WALDir is the write-ahead log's directory; "" = no write-ahead log
	// (at-least-once or at-most-once only).
	WALDir   string
	Delivery engine.Delivery
	Pipeline string
	Logger   *slog.Logger
	Metrics  *Metrics
}

// Receiver is the receiver-mode source (engine.Source): a consumer-group
// reader running in the background, cutting blocks every BlockInterval.
type Receiver struct {
	cfg ReceiverConfig
	log *slog.Logger

	reader       *kafkago.Reader
	client       *kafkago.Client // for end offsets, to report lag
	refreshEvery time.Duration   // how often a pattern is re-resolved
	wal          *wal.WAL
	cancel       context.CancelFunc
	done         chan struct{}

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced when readable grows or err is set
	readable int64         // WAL: sequences below this may be handed out
	pos      int64         // WAL: next sequence to hand out
	queue    []engine.Record
	next     engine.Positions // next Kafka offset per partition handed out
	err      error
	lagAt    time.Time // when lag was last reported
}

// lagEvery bounds how often a receiver lists end offsets to report lag.
const lagEvery = time.Second

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
	if len(cfg.Topics) == 0 && cfg.Pattern == "" {
		return nil, errors.New("kafka: list topics or give a pattern")
	}
	r := &Receiver{cfg: cfg, log: cfg.Logger, refreshEvery: metadataRefresh}
	if r.log == nil {
		r.log = slog.Default()
	}
	return r, nil
}

// Open implements engine.Source. With a write-ahead log it resumes at the
// log sequence the sink committed; without one the group's offsets say
// where reading resumes and from is ignored.
func (r *Receiver) Open(ctx context.Context, from engine.Positions) (err error) {
	// One client for metadata, the group catch-up and lag; the group
	// reader keeps its own connections.
	if r.client, err = r.cfg.Conn.client("sluice-" + r.cfg.Pipeline); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			r.closeClient()
		}
	}()
	topics, err := r.topics(ctx)
	if err != nil {
		return err
	}
	r.changed = make(chan struct{})
	r.err, r.queue, r.next = nil, nil, engine.Positions{}
	var skip engine.Positions
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
		// Records in the log whose group commit may not have happened
		// (a crash between fsync and commit) must not be logged twice.
		skip = w.MaxOffsets()
		r.catchUpGroup(ctx, skip)
	}
	dialer := &kafkago.Dialer{Timeout: dialTimeout, DualStack: true, ClientID: "sluice-" + r.cfg.Pipeline}
	if r.cfg.Conn.TLS != nil {
		if dialer.TLS, err = tlsconfig.Load(*r.cfg.Conn.TLS); err != nil {
			return err
		}
	}
	if r.cfg.Conn.SASL != nil {
		if dialer.SASLMechanism, err = saslMechanism(*r.cfg.Conn.SASL); err != nil {
			return err
		}
	}
	start := kafkago.FirstOffset
	if r.cfg.Start == "latest" {
		start = kafkago.LastOffset
	}
	r.reader = kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:        r.cfg.Conn.Brokers,
		GroupID:        r.cfg.Group,
		GroupTopics:    topics,
		Dialer:         dialer,
		MinBytes:       1,
		MaxBytes:       readerMaxBytes,
		MaxWait:        r.cfg.BlockInterval,
		StartOffset:    start,
		CommitInterval: 0, // commit synchronously, after the block is durable
		// New partitions of the topics are picked up while running.
		WatchPartitionChanges: true,
		// Stop at the last stable offset: records of open transactions
		// wait until decided. (kafka-go's reader does not drop records
		// of aborted transactions; direct mode does.)
		IsolationLevel: kafkago.ReadCommitted,
		ErrorLogger:    kafkago.LoggerFunc(func(f string, a ...any) { r.log.Warn(fmt.Sprintf(f, a...), "pipeline", r.cfg.Pipeline) }),
	})
	loopCtx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go r.loop(loopCtx, skip, topics)
	return nil
}

// topics resolves a pattern to the topics that match it now, and checks
// that listed topics exist: a group reader started on a missing topic would
// wait without ever seeing it created.
func (r *Receiver) topics(ctx context.Context) ([]string, error) {
	var re *regexp.Regexp
	if r.cfg.Pattern != "" {
		var err error
		if re, err = regexp.Compile("^(?:" + r.cfg.Pattern + ")$"); err != nil {
			return nil, fmt.Errorf("kafka pattern %q: %w", r.cfg.Pattern, err)
		}
	}
	meta, err := r.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: r.cfg.Topics})
	if err != nil {
		return nil, engine.Retryable(fmt.Errorf("kafka metadata: %w", err))
	}
	if re == nil {
		for _, t := range meta.Topics {
			if t.Error != nil {
				return nil, engine.Retryable(fmt.Errorf("kafka topic %s: %w; create it (sluice topic create %s) or fix the topic name", t.Name, t.Error, t.Name))
			}
		}
		return r.cfg.Topics, nil
	}
	var topics []string
	for _, t := range meta.Topics {
		if t.Error == nil && re.MatchString(t.Name) {
			topics = append(topics, t.Name)
		}
	}
	if len(topics) == 0 {
		return nil, engine.Retryable(fmt.Errorf("no topic matches pattern %q yet", r.cfg.Pattern))
	}
	return topics, nil
}

// catchUpGroup commits the offsets after what the log holds, so a restarted
// reader starts past it. It is best effort: while other members hold the
// group the broker refuses it, and the reader's skip list covers the gap.
func (r *Receiver) catchUpGroup(ctx context.Context, logged engine.Positions) {
	if len(logged) == 0 {
		return
	}
	next := engine.Positions{}
	for tp, off := range logged {
		next[tp] = off + 1
	}
	if err := commitToGroup(ctx, r.client, r.cfg.Group, next); err != nil {
		r.log.Debug("could not move the group past the write-ahead log; duplicates will be skipped", "err", err)
	}
}

// loop reads the group continuously and cuts a block every BlockInterval.
func (r *Receiver) loop(ctx context.Context, skip engine.Positions, topics []string) {
	defer close(r.done)
	// A pattern is re-resolved now and then; a group reader's topics are
	// fixed, so a change restarts the receiver (the engine reopens it from
	// the sink's position; nothing committed or logged is lost).
	var refresh <-chan time.Time
	if r.cfg.Pattern != "" {
		t := time.NewTicker(r.refreshEvery)
		defer t.Stop()
		refresh = t.C
	}
	msgs := make(chan kafkago.Message, 1024)
	fetchErr := make(chan error, 1)
	go func() {
		defer close(msgs)
		for {
			m, err := r.reader.FetchMessage(ctx)
			if err != nil {
				if ctx.Err() == nil {
					fetchErr <- err
				}
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	tick := time.NewTicker(r.cfg.BlockInterval)
	defer tick.Stop()
	var block []kafkago.Message
	perPartition := map[engine.TopicPartition]int64{}
	budget := int64(0)
	if r.cfg.MaxRate > 0 {
		budget = max(int64(float64(r.cfg.MaxRate)*r.cfg.BlockInterval.Seconds()), 1)
	}
	throttled := false
	for {
		in := msgs
		if throttled || r.full() {
			in = nil // wait for the next block
		}
		select {
		case <-ctx.Done():
			return
		case err := <-fetchErr:
			r.fail(engine.Retryable(fmt.Errorf("kafka receiver: %w", err)))
			return
		case <-refresh:
			now, err := r.topics(ctx)
			if err != nil || slices.Equal(sortedCopy(now), sortedCopy(topics)) {
				continue
			}
			if len(block) > 0 {
				if err := r.store(ctx, block, skip); err != nil {
					if ctx.Err() == nil {
						r.fail(err)
					}
					return
				}
			}
			r.fail(engine.Retryable(fmt.Errorf("the topics matching pattern %q changed from %v to %v; restarting the receiver to read them", r.cfg.Pattern, topics, now)))
			return
		case m, ok := <-in:
			if !ok {
				return
			}
			// Take whatever else is queued without a full select per
			// message: at high rates the select dominated the loop.
			for {
				tp := engine.TopicPartition{Topic: m.Topic, Partition: int32(m.Partition)}
				block = append(block, m)
				perPartition[tp]++
				if budget > 0 && perPartition[tp] >= budget {
					throttled = true
				}
				if throttled || len(block) >= maxBlockRecords {
					break
				}
				select {
				case m, ok = <-msgs:
				default:
					ok = false
				}
				if !ok {
					break
				}
			}
			if len(block) < maxBlockRecords {
				continue
			}
		case <-tick.C:
		}
		if len(block) > 0 {
			if err := r.store(ctx, block, skip); err != nil {
				if ctx.Err() == nil {
					r.fail(err)
				}
				return
			}
			block = block[:0]
		}
		clear(perPartition)
		throttled = false
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func (r *Receiver) full() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue) >= maxQueuedRecords
}

// store makes a block available: with a write-ahead log, append + fsync,
// then commit the group offsets, then let batches see it; without one,
// queue it (at-most-once commits the group offsets first).
func (r *Receiver) store(ctx context.Context, block []kafkago.Message, skip engine.Positions) error {
	recs := make([]engine.Record, 0, len(block))
	last := map[engine.TopicPartition]kafkago.Message{}
	for _, m := range block {
		tp := engine.TopicPartition{Topic: m.Topic, Partition: int32(m.Partition)}
		last[tp] = m
		if off, ok := skip[tp]; ok && m.Offset <= off {
			continue // already in the write-ahead log
		}
		rec := engine.Record{Topic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset,
			Key: m.Key, Value: m.Value, Time: m.Time}
		for _, h := range m.Headers {
			rec.Headers = append(rec.Headers, engine.Header{Key: h.Key, Value: h.Value})
		}
		recs = append(recs, rec)
	}
	commits := make([]kafkago.Message, 0, len(last))
	for _, m := range last {
		commits = append(commits, m)
	}
	if r.wal != nil {
		end, err := r.wal.Append(recs)
		if err != nil {
			return fmt.Errorf("receiver write-ahead log: %w", err)
		}
		if err := r.reader.CommitMessages(ctx, commits...); err != nil {
			return engine.Retryable(fmt.Errorf("commit group offsets after the write-ahead log: %w", err))
		}
		r.publish(func() { r.readable = end })
		return nil
	}
	if r.cfg.Delivery == engine.AtMostOnce {
		if err := r.reader.CommitMessages(ctx, commits...); err != nil {
			return engine.Retryable(fmt.Errorf("commit group offsets: %w", err))
		}
	}
	r.publish(func() { r.queue = append(r.queue, recs...) })
	return nil
}

func (r *Receiver) publish(change func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	change()
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Receiver) fail(err error) {
	r.publish(func() { r.err = err })
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
// the sink committed and the partition's end. At most once per lagEvery.
func (r *Receiver) reportLag(ctx context.Context) {
	if r.cfg.Metrics == nil || len(r.next) == 0 || time.Since(r.lagAt) < lagEvery {
		return
	}
	r.lagAt = time.Now()
	_, ends, err := listOffsets(ctx, r.client, r.next.Sorted())
	if err != nil {
		r.log.Debug("lag not reported", "pipeline", r.cfg.Pipeline, "err", err)
		return
	}
	for tp, next := range r.next {
		if end, ok := ends[tp]; ok {
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
	r.reportLag(ctx)
	if r.wal != nil {
		return r.wal.Trim(until[walPartition])
	}
	if r.cfg.Delivery != engine.AtLeastOnce {
		return nil
	}
	var commits []kafkago.Message
	for tp, off := range until {
		commits = append(commits, kafkago.Message{Topic: tp.Topic, Partition: int(tp.Partition), Offset: off - 1})
	}
	return r.reader.CommitMessages(ctx, commits...)
}

func (r *Receiver) closeClient() {
	closeIdle(r.client)
	r.client = nil
}

// Close implements engine.Source: it stops reading and leaves the group.
func (r *Receiver) Close() error {
	r.closeClient()
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	<-r.done
	err := r.reader.Close()
	if r.wal != nil {
		err = errors.Join(err, r.wal.Close())
		r.wal = nil
	}
	r.cancel = nil
	return err
}
