package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
)

// The receiver is in six files: this one (configuration, Open, Close),
// receiver_group.go (group membership: where assigned partitions start,
// group commits, rebalances), receiver_alone.go (one process per pipeline:
// the check that no other write-ahead log is in the group),
// receiver_loop.go (the poll loop that cuts blocks), receiver_handoff.go
// (what a stored block goes through: the write-ahead log or the in-memory
// queue) and receiver_batches.go (what Next hands out, Backlog,
// Committed). loss.go holds on-data-loss for both modes.
//
// Goroutines: the engine's calls (Open, Next, Backlog, Committed, Close;
// never concurrent), the poll loop and the background store it starts for
// a block cut early, and franz-go's group callbacks (startPositions,
// revoked, lost, and the completion of an asynchronous group commit).
// Each field of Receiver says which lock guards it or who owns it.

const (
	// maxBlockRecords cuts a block early, so one block's memory is bounded
	// however fast records arrive.
	maxBlockRecords = 100_000
	// readAheadBatches is how far the receiver stores blocks ahead of the
	// batches that take them, in batches of the size the latest Next was
	// allowed (max-records-per-partition × assigned partitions, or the rate
	// controller's max-records if smaller): one batch is enough for the
	// next Next to find a whole batch waiting while the engine processes
	// and commits the ones before it. Past it the poll loop waits for a
	// Next to take records: what the receiver holds in memory is at most
	// this, and every batch is handed out from memory, never read back from
	// the write-ahead log files except after a restart.
	readAheadBatches = 1
	// readAheadUncapped is the read-ahead when Next is given no limits, and
	// before the first Next: the batch of the default settings
	// (max-records-per-partition 50,000 × 4 partitions).
	readAheadUncapped = 200_000
	// readerMaxBytes is what the group consumer asks for per partition and
	// fetch; readerMaxFetchBytes bounds a whole fetch response. franz-go
	// buffers one fetch per broker beyond the one being polled, and each
	// fetched record costs a decoded kgo.Record (~160 B) besides its bytes,
	// decompressed, so these bound the client's memory (times the
	// compression ratio); franz-go's default of 1 MiB per partition already
	// reads at full speed.
	readerMaxBytes      = 1 << 20
	readerMaxFetchBytes = 8 << 20
	// listLagsEvery spaces the listings of partition ends and group
	// offsets (listLags) while other members hold subscribed partitions;
	// listLagsRetry spaces them while Backlog waits for one.
	listLagsEvery = time.Second
	listLagsRetry = 100 * time.Millisecond
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
	// SkipCorrupt is on-corrupt: skip (true) or fail.
	SkipCorrupt bool
	Delivery    engine.Delivery
	Pipeline    string
	Logger      *slog.Logger
	Metrics     *Metrics
}

// Receiver is the receiver-mode source (engine.Source and
// engine.Backlogger): a franz-go group consumer polled in the background,
// cutting blocks every BlockInterval.
//
// It reads read_committed, so records of aborted transactions and
// transaction markers never reach a block. Rebalances are blocked from the
// first poll of a block until that block is in the write-ahead log (and
// its group commit issued): when partitions are revoked or lost, the
// receiver holds nothing it has polled but not logged, revoking commits
// what the log holds before the partitions go, and the next owner starts
// right after it. A block is fsynced before its group offsets are
// committed, and the log is trimmed only below what the group's offsets
// cover, so a restarted receiver knows every record it logged whose group
// offset may be behind and skips it.
//
// Blocks stay in memory after they are logged (encoded once, for the log,
// and decoded from that same buffer when handed out), and batches are
// handed out from there; the log's files are read only for what a
// restarted receiver resumes below the end of its log. The receiver runs
// ahead of the batches by at most readAheadBatches: past it, it stops
// polling until a batch takes records, so records wait in Kafka rather
// than in memory or in the log.
//
// franz-go does not reset a partition whose position retention deleted:
// where it resumes is checked against the log start when it is assigned,
// and an OFFSET_OUT_OF_RANGE while reading comes back to the receiver, so
// on-data-loss decides both, as in direct mode.
type Receiver struct {
	// Set by NewReceiver (and tests before Open); read-only afterwards.
	cfg          ReceiverConfig
	log          *slog.Logger
	pattern      *regexp.Regexp
	refreshEvery time.Duration // metadata refresh: new topics and partitions
	// fetchBytes and partitionFetchBytes are readerMaxFetchBytes and
	// readerMaxBytes, but for tests.
	fetchBytes, partitionFetchBytes int32
	// skipJoinCheck and skipAssignCheck skip the checks for another
	// write-ahead log in the group (receiver_alone.go) before joining and
	// at the first assignment, for tests.
	skipJoinCheck, skipAssignCheck bool

	// walID is the write-ahead log's identity (receiver_alone.go), set by
	// the first Open with a log; read-only afterwards.
	walID string

	// Set by Open before the poll loop starts and cleared by Close after
	// it has ended (and the client has left the group); read-only in
	// between, by the loop, franz-go's callbacks and the Source methods.
	// The group may assign partitions before kgo.NewClient returns, so
	// franz-go's callbacks use the client they are given, not cl; h is
	// set before the client is made.
	cl      *kgo.Client
	connErr *lastConnectError
	h       handoff // the write-ahead log or the in-memory queue
	cancel  context.CancelFunc
	done    chan struct{}
	// skips are batches on-corrupt: skip stepped over in the latest poll
	// (corrupt.go). Only the poll loop touches it.
	skips []skipTo

	// gmu guards what the poll loop shares with franz-go's group callbacks,
	// Next, Backlog and Committed: what is known of each partition, and
	// how many records the block being built holds, which changes together
	// with the partitions' positions so that Backlog never counts a record
	// in neither. When both locks are held, gmu is taken first.
	gmu    sync.Mutex
	parts  map[engine.TopicPartition]*recvPartition // never shrinks while open
	polled int64                                    // records in the blocks being built and being stored
	// With a write-ahead log: loggedSeq is its end as of the latest store;
	// below groupSeq every logged record's group offset is committed, and
	// only below it (and below what the sink committed) is the log
	// trimmed: the log is what tells a restarted receiver which records it
	// holds already (wal.MaxOffsets), so it must not forget records the
	// group would hand out again. checked: the group has assigned
	// partitions since Open, so pending covers what the log held at Open.
	loggedSeq, groupSeq int64
	committing          bool // an asynchronous group commit is in flight
	checked             bool
	// alone: the first assignment since Open found no other log in the
	// group (receiver_alone.go).
	alone bool
	// others is the lag of each subscribed partition this member does not
	// hold, as listLags last listed it for assignment othersGen; assignGen
	// counts assignment changes, so Backlog knows whether others is
	// current.
	others               map[engine.TopicPartition]int64
	othersGen, assignGen int

	// mu guards what the poll loop shares with Next: the blocks stored
	// and not yet handed out, and the loop's signals.
	mu      sync.Mutex
	changed chan struct{} // closed and replaced when blocks are stored or taken, or err is set
	// Sequences number every stored record: with a write-ahead log they
	// are its sequences, without one they count from 0 at Open.
	readable int64 // records below this sequence may be handed out
	// pos is the next sequence to hand out. Only Next (and Open) write
	// it, under mu, so Next also reads it without mu.
	pos       int64
	mem       []memBlock // stored blocks not yet wholly handed out, in order
	readAhead int64      // see readAheadBatches
	waiting   bool       // a Next is waiting for records
	full      bool       // the poll loop waits for read-ahead room
	interrupt func()     // ends the loop's current poll; nil when not polling
	err       error      // what stopped the receiver

	// Owned by the Source methods (Open, Next, Committed), which the
	// engine never calls concurrently; nothing else touches them, so no
	// lock.
	next  engine.Positions // next Kafka offset per partition handed out
	acked engine.Positions // next Kafka offset per partition committed (lag gauges)
	buf   recordBuffer     // a slice the engine handed back, for the next batch
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
	r := &Receiver{cfg: cfg, log: cfg.Logger, refreshEvery: metadataRefresh,
		fetchBytes: readerMaxFetchBytes, partitionFetchBytes: readerMaxBytes}
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
	r.next, r.acked = engine.Positions{}, engine.Positions{}
	r.gmu.Lock()
	r.parts, r.polled, r.alone = map[engine.TopicPartition]*recvPartition{}, 0, false
	// Nothing listed for the assignment to come.
	r.others, r.othersGen, r.assignGen = nil, -1, 0
	r.gmu.Unlock()
	r.mu.Lock()
	r.changed = make(chan struct{})
	r.err, r.mem, r.waiting, r.interrupt = nil, nil, false, nil
	r.pos, r.readable, r.readAhead = 0, 0, readAheadUncapped
	r.mu.Unlock()
	if r.cfg.WALDir != "" && r.walID == "" {
		if r.walID, err = walIdentity(r.cfg.WALDir); err != nil {
			return err
		}
	}
	opts, err := r.cfg.Conn.kgoOpts(r.clientID(), r.log)
	if err != nil {
		return err
	}
	if r.walID != "" && !r.skipJoinCheck {
		if err := r.aloneBeforeJoin(ctx, opts); err != nil {
			return err
		}
	}
	if r.cfg.WALDir != "" {
		h, pos, end, err := openWAL(r, from)
		if err != nil {
			return err
		}
		r.h = h
		r.mu.Lock()
		r.pos, r.readable = pos, end
		r.mu.Unlock()
	} else {
		r.h = queueHandoff{r}
	}
	defer func() {
		if err != nil {
			r.h.close()
			r.h = nil
		}
	}()
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
		// Drop aborted transactions' records, and stop at the last stable
		// offset until open transactions are decided.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers arrive as control records (never logged), so
		// a partition's position moves past them to its last stable offset
		// and Backlog can say it is caught up.
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(r.cfg.BlockInterval),
		kgo.FetchMaxPartitionBytes(r.partitionFetchBytes),
		kgo.FetchMaxBytes(r.fetchBytes),
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
	err := r.h.close()
	r.h = nil
	r.mu.Lock()
	r.mem = nil
	r.mu.Unlock()
	r.cancel = nil
	return err
}

// publish changes what the loop shares with Next and wakes a waiting Next
// or loop.
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

// Recycle implements engine.Recycler.
func (r *Receiver) Recycle(records []engine.Record) { r.buf.put(records) }
