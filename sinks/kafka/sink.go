package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sinks"
	"github.com/sluicehq/sluice/sinks/internal/commit"
)

const (
	// transactionTimeout is how long the broker lets one epoch's
	// transaction stay open before aborting it and fencing this producer;
	// it bounds how long a crashed instance holds back read_committed
	// readers of the output topic. A batch taking longer fails and is
	// redone.
	transactionTimeout = time.Minute
	// recordRetries bounds how often one batch of records is resent.
	recordRetries = 10
	// closeTimeout bounds the abort Close sends for an open transaction.
	closeTimeout = 10 * time.Second
	// abortTimeout bounds one abort: a transaction not aborted by then is
	// aborted by the broker at its timeout, or by the next Open.
	abortTimeout = 10 * time.Second
	// maxBufferedBytes bounds what one epoch keeps queued in the client
	// before Write blocks on the broker.
	maxBufferedBytes = 256 << 20
)

// Sink is the exactly-once Kafka sink: each epoch is one producer
// transaction holding the output records, the dead letters and a
// checkpoint record. It is not safe for concurrent use.
type Sink struct {
	cfg Config
	log *slog.Logger

	pipeline string
	cl       *kgo.Client
	known    checkpoint    // what this instance last read or committed
	staged   commit.Staged // epoch with an open transaction
	fence    commit.Fence
	mem      arena  // the staged epoch's records
	txnID    string // the producer's transactional id
	task     taskState
	// stored: the topics this client produced to, true once it has
	// stored their partitions (awaitStored).
	stored map[string]bool

	mu      sync.Mutex
	failure error // first asynchronous produce failure of the staged epoch
}

// New checks cfg and returns a sink; it connects in Open.
func New(cfg Config) (*Sink, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Tasks != nil {
		// Positions are the group's offsets, committed in the sink's
		// transactions: the source must not echo over them.
		cfg.Tasks.SinkCommitsOffsets()
	}
	return &Sink{cfg: cfg, log: log, staged: commit.Staged{Sink: "kafka sink"}}, nil
}

// Open connects, fences every older instance of the pipeline (a new
// producer epoch for its transactional id: their open transaction is
// aborted, one being committed is completed first), and reads the last
// committed checkpoint.
func (s *Sink) Open(ctx context.Context, pipeline string) (uint64, engine.Positions, error) {
	if s.cl != nil {
		s.cl.Close()
		s.cl = nil
	}
	// A fresh arena: the old client may not have let go of the old one.
	s.pipeline, s.staged.Epoch, s.failure, s.mem, s.stored = pipeline, 0, nil, arena{}, nil
	s.task, s.txnID = taskState{}, s.cfg.transactionalID(pipeline)
	s.fence = commit.Fence{Sink: "kafka sink", Pipeline: pipeline, Where: "topic " + s.cfg.checkpointTopic(pipeline),
		Advice: "run one instance of a pipeline per transactional id, and do not write to its checkpoint topic"}
	opts, err := s.cfg.clientOptions("sluice-sink-" + pipeline)
	if err != nil {
		return 0, nil, err
	}
	opts = append(opts,
		kgo.TransactionalID(s.cfg.transactionalID(pipeline)),
		kgo.TransactionTimeout(transactionTimeout),
		kgo.MaxBufferedBytes(maxBufferedBytes),
		kgo.ProducerBatchCompression(s.cfg.codec()),
		// Retries are safe inside a transaction (sequence numbers drop
		// duplicates); a record still failing after them fails the epoch,
		// which is then redone. (Not RecordDeliveryTimeout: it counts from
		// the record's timestamp, which is the source record's.)
		kgo.RecordRetries(recordRetries),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return 0, nil, fmt.Errorf("kafka sink: %w", err)
	}
	if err := s.cfg.ensureTopics(ctx, cl, pipeline, s.log); err != nil {
		cl.Close()
		return 0, nil, err
	}
	// The producer id is what fences: after this, no older instance can
	// commit, and nothing of theirs is left in doubt for the read below.
	if _, _, err := cl.ProducerID(ctx); err != nil {
		cl.Close()
		hint := "; the cluster must support transactions (Kafka 0.11+) and allow this client to use the transactional id"
		if err = classify(err); engine.IsRetryable(err) || errors.Is(err, engine.ErrFenced) {
			hint = ""
		}
		return 0, nil, fmt.Errorf("kafka sink: init transactional producer %q: %w%s", s.cfg.transactionalID(pipeline), err, hint)
	}
	c, err := readCheckpoint(ctx, s.cfg, pipeline)
	if err != nil {
		cl.Close()
		return 0, nil, err
	}
	s.cl, s.known = cl, c
	return c.Epoch, c.Positions.Clone(), nil
}

// Write produces records into the epoch's transaction. Produce failures
// surface in Commit, which then refuses the epoch.
func (s *Sink) Write(ctx context.Context, epoch uint64, records []engine.Record) error {
	if err := s.begin(ctx, epoch); err != nil {
		return err
	}
	s.produce(ctx, s.cfg.Topic, records)
	return nil
}

// WriteRejected produces dead letters to the dead-letter topic in the
// epoch's transaction, so they commit with its output. It implements
// engine.DeadLetterSink.
func (s *Sink) WriteRejected(ctx context.Context, epoch uint64, rejected []engine.Rejected) error {
	if s.cfg.DeadLetterTopic == "" {
		return errors.New("kafka sink: dead letters need a topic; write dead-letter: {topic: NAME}")
	}
	if err := s.begin(ctx, epoch); err != nil {
		return err
	}
	recs := make([]engine.Record, len(rejected))
	for i := range rejected {
		recs[i] = sinks.DeadLetter(rejected[i])
	}
	s.produce(ctx, s.cfg.DeadLetterTopic, recs)
	return nil
}

func (s *Sink) begin(ctx context.Context, epoch uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.cl == nil {
		return errors.New("kafka sink: Write before Open")
	}
	if s.staged.Epoch == epoch {
		return nil
	}
	if err := s.staged.CheckWrite(epoch); err != nil {
		return err
	}
	s.staged.Epoch = epoch
	if err := s.cl.BeginTransaction(); err != nil {
		// A fenced client cannot begin; Commit reports it.
		s.fail(err)
	}
	return nil
}

// produce copies records into the epoch's arena (the client sends them
// after Write returns, and the caller may reuse its slices) and queues them.
func (s *Sink) produce(ctx context.Context, topic string, records []engine.Record) {
	if s.failed() != nil {
		return
	}
	if len(records) > 0 {
		s.noteTopic(topic)
	}
	for i := range records {
		r, k := &records[i], s.mem.record()
		k.Topic, k.Key, k.Value, k.Timestamp = topic, s.mem.copy(r.Key), s.mem.copy(r.Value), r.Time
		if len(r.Headers) > 0 {
			k.Headers = make([]kgo.RecordHeader, len(r.Headers))
			for j, h := range r.Headers {
				k.Headers[j] = kgo.RecordHeader{Key: h.Key, Value: s.mem.copy(h.Value)}
			}
		}
		s.cl.Produce(ctx, k, s.promise)
	}
}

func (s *Sink) promise(_ *kgo.Record, err error) {
	if err != nil {
		s.fail(err)
	}
}

func (s *Sink) fail(err error) {
	s.mu.Lock()
	if s.failure == nil {
		s.failure = err
	}
	s.mu.Unlock()
}

func (s *Sink) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failure
}

// Commit adds the checkpoint record to the epoch's transaction and commits
// it. The transactional id fences other instances; the epoch check below
// keeps commits contiguous.
func (s *Sink) Commit(ctx context.Context, epoch uint64, until engine.Positions) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.cl == nil {
		return errors.New("kafka sink: Commit before Open")
	}
	if err := s.staged.CheckCommit(epoch); err != nil {
		return err
	}
	switch commit.Check(epoch, until, s.known.Epoch, s.known.Positions) {
	case commit.Done:
		// A retry after a lost acknowledgement, or a replay of the
		// committed batch: its output is there already.
		return s.abort(ctx)
	case commit.Fenced:
		err := s.fence.Error(epoch, fmt.Sprintf("epoch %d is committed", s.known.Epoch))
		if aerr := s.abort(ctx); aerr != nil {
			s.log.Warn("kafka sink: abort after refused commit", "pipeline", s.pipeline, "epoch", epoch, "err", aerr)
		}
		return err
	}
	if err := s.begin(ctx, epoch); err != nil {
		return err
	}
	c := checkpoint{Pipeline: s.pipeline, Epoch: epoch, Positions: until.Clone(), Time: time.Now().UTC()}
	value, err := c.marshal()
	if err != nil {
		return err
	}
	s.noteTopic(s.cfg.checkpointTopic(s.pipeline))
	s.cl.Produce(ctx, &kgo.Record{Topic: s.cfg.checkpointTopic(s.pipeline), Key: []byte(s.pipeline), Value: value}, s.promise)
	if err := s.cl.Flush(ctx); err != nil {
		s.fail(err)
	}
	if err := s.awaitStored(ctx); err != nil {
		s.fail(err)
	}
	if err := s.failed(); err != nil {
		if aerr := s.abort(ctx); aerr != nil && !isFenced(err) {
			s.log.Warn("kafka sink: abort after failed write", "pipeline", s.pipeline, "epoch", epoch, "err", aerr)
		}
		return fmt.Errorf("kafka sink: epoch %d: %w", epoch, classify(err))
	}
	if err := s.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		if isFenced(err) {
			return fmt.Errorf("kafka sink: commit epoch %d: %w", epoch, classify(err))
		}
		// The commit may or may not have taken: the engine reopens, and
		// Open reads which after fencing whatever is left in doubt.
		return fmt.Errorf("kafka sink: commit epoch %d: %w (%w)", epoch, engine.ErrNotCommitted, engine.Retryable(err))
	}
	s.known, s.staged.Epoch = c, 0
	s.mem.reset() // Flush waited for every record's promise
	return nil
}

// Abort drops the epoch's open transaction; committed output is never
// touched (the broker only aborts what is not committed).
func (s *Sink) Abort(ctx context.Context, epoch uint64) error {
	if s.cl == nil {
		return nil
	}
	return s.abort(ctx)
}

func (s *Sink) abort(ctx context.Context) error {
	if s.staged.Epoch == 0 {
		return nil
	}
	s.staged.Epoch = 0
	failure := s.failed()
	// Records the abort fails call the promise too: clear after them.
	defer func() {
		s.mu.Lock()
		s.failure = nil
		s.mu.Unlock()
	}()
	if failure != nil && isFenced(failure) {
		// A fenced producer can send nothing more; the broker aborted its
		// transaction when the newer instance initialised. The client may
		// still hold records: leave the arena to it.
		s.mem = arena{}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, abortTimeout)
	defer cancel()
	if err := s.cl.AbortBufferedRecords(ctx); err != nil {
		s.mem = arena{}
		return fmt.Errorf("kafka sink: abort: %w", err)
	}
	s.mem.reset() // no record is buffered any more
	if err := s.awaitStored(ctx); err != nil {
		// Aborting anyway: what the client misses stays open on the
		// broker until the transaction times out or the next Open fences it.
		s.log.Warn("kafka sink: aborting before the client stored every partition", "pipeline", s.pipeline, "err", err)
	}
	if err := s.cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		return fmt.Errorf("kafka sink: abort: %w", classify(err))
	}
	return nil
}

// Close aborts an open transaction and disconnects.
func (s *Sink) Close() error {
	if s.cl == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	err := s.abort(ctx)
	s.cl.Close()
	s.cl = nil
	if err != nil && !isFenced(err) {
		return err
	}
	return nil
}

// isFenced reports whether err says a newer producer of the same
// transactional id exists.
func isFenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, engine.ErrFenced)
}

// classify wraps a fencing error in engine.ErrFenced and marks transient
// broker errors retryable.
func classify(err error) error {
	switch {
	case errors.Is(err, engine.ErrFenced):
		return err
	case isFenced(err):
		return fmt.Errorf("%w: another instance of this pipeline opened the same transactional id (%w)", engine.ErrFenced, err)
	}
	var ke *kerr.Error
	var ne net.Error
	// OUT_OF_ORDER_SEQUENCE_NUMBER in a transaction means the client's
	// sequence numbers are out of step with the broker's (see
	// awaitStored); the client re-initialises its epoch, so the epoch goes
	// through on a retry, where stopping would end the run.
	if errors.As(err, &ke) && ke.Retriable || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, kerr.OutOfOrderSequenceNumber) {
		// The cluster is unreachable or busy: the engine backs off and
		// reopens.
		return engine.Retryable(err)
	}
	return err
}
