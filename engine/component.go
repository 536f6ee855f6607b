package engine

import (
	"context"
	"errors"

	"github.com/sluicehq/sluice/internal/record"
)

// Who calls what (docs/ARCHITECTURE.md §5). A running pipeline has two
// goroutines: the batch loop (the caller of Pipeline.Run) and, while the
// source is open, the intake, which reads and transforms batch e+1 while
// the loop writes, commits and acknowledges batch e. The loop stops the
// intake and waits for it before it opens or closes the source, aborts,
// backs off or returns, so an intake never outlives a failure and each
// component's calls are ordered (happens-before), whichever goroutine
// makes them: a component needs no lock for state only its own methods
// touch.
//
//   - Source: Next, Backlog and Committed on the intake; Open and Close on
//     the loop, with no intake running; Committed also on the loop, once
//     it has stopped the intake. Never two at once.
//   - Transform: Process on the intake, one batch at a time, through the
//     chain in order; Close on the loop when Run returns. Never two at
//     once, across the whole chain.
//   - Sink (and CheckpointStore): every call on the loop, so never two at
//     once. They overlap the intake's Source and Transform calls for the
//     next batch.
//
// A pipeline split into tasks (tasks.go) calls TaskSource.OpenTasks and
// TaskSink.OpenTasks where Open would be called and CommitTasks where
// Commit would, by the same rules; after every OpenTasks the epochs Write,
// CommitTasks and Abort are given are rounds counted from 1 again. The
// Assigner is asked on the loop too.
//
// Today the intake calls the source and the transforms one after the
// other, so Process never overlaps a Source call either; that is not
// promised.

// Source reads records and says where the next read starts.
//
// Threading contract: the engine never calls Source methods concurrently,
// but it does overlap batches. Next for batch e+1 may be in progress (and
// may have returned) before batch e is committed, so Committed(until) may
// arrive after later Next calls and names positions behind the ones the
// last Next returned. A source that keeps state per read (a receiver's
// write-ahead log) must therefore trim or report only up to until, never up
// to what it has handed out. After a failure the engine discards whatever it
// read ahead and reopens the source at the sink's positions. Next,
// Backlog and Committed are called only between Open and Close; Open is
// not called again before Close.
type Source interface {
	// Open resumes at the given positions (nil or empty = the pipeline's
	// start policy). ctx bounds only the opening; background work the source
	// starts lives until Close. After a failure the engine calls Close and
	// then Open again with the sink's positions.
	Open(ctx context.Context, from Positions) error
	// Next returns the next batch's records and the positions just past
	// them, bounded by limits. It returns no records and the unchanged
	// positions when nothing arrived within limits.Wait. The engine owns the
	// returned slice and records. ctx bounds this call.
	Next(ctx context.Context, limits Limits) (records []Record, until Positions, err error)
	// Committed is called after the sink committed until (receiver mode
	// trims its write-ahead log here; Kafka sources echo positions to the
	// consumer group for lag tools). It may come after Next calls for later
	// batches; when several commits happen while a Next runs, only the
	// latest until is passed (positions only grow). ctx bounds this call.
	Committed(ctx context.Context, until Positions) error
	Close() error
}

// Recycler is the optional capability of a Source that reuses the slices
// Next returns, so a pipeline does not allocate (and fault in, and have
// the collector scan) a fresh slice of records per batch. The engine hands
// a slice back once nothing reads it any more: its batch was written and
// committed, and no transform held it (with transforms, the engine keeps
// their output and hands nothing back). Like every Source method it is
// never called concurrently with the others. The records in it may still
// point at the bytes of the batch they held; the source overwrites them.
type Recycler interface {
	Recycle(records []Record)
}

// Backlogger is the optional capability of a Source that knows how much
// input waits past what it has returned. The engine uses it to run batches
// back to back while the pipeline is behind, instead of waiting for the
// next interval tick, and to tell --idle-exit that nothing is left. Like
// every Source method it is never called concurrently with the others.
type Backlogger interface {
	// Backlog returns how many records are known to exist past the
	// positions the last Next returned, as of the source's latest listing
	// of its partitions' ends (no I/O), and false while unknown (for example
	// before a consumer group has assigned partitions).
	Backlog() (records int64, known bool)
}

// Ender is the optional capability of a Source that knows where its
// partitions end, so the lag of what is committed can be told (per task,
// for the daemon's API). Like Backlog it does no I/O, and like every Source
// method it is never called concurrently with the others; the engine calls
// it after each Next.
type Ender interface {
	// Ends returns the end (next offset to be written, as of the source's
	// latest listing or fetch) of each partition it reads; a partition
	// whose end is unknown is missing.
	Ends() Positions
}

// Transform maps whole batches. One interface, two transports: in-process
// and a go-plugin subprocess.
//
// Threading contract: Process is never called concurrently, with itself or
// with another transform of the chain, and a chain sees batches in the
// order they were read. It runs ahead: while the sink writes and commits
// batch e, Process may map batch e+1, whose output is discarded if the
// pipeline fails or stops before e+1 commits; the same input is then
// mapped again after the source reopens. Close is called once, when Run
// returns, after the last Process has returned; transforms are not closed
// when the source reopens.
type Transform interface {
	// Process maps a batch; 0..n outputs per input. Per-record failures come
	// back in rejected; a returned error fails the whole batch, which is then
	// recomputed. The input slice is not retained. The engine owns out and
	// rejected once Process returns: the sink reads them later, on another
	// goroutine. ctx bounds this call and ends at once when the pipeline
	// stops.
	Process(ctx context.Context, in []Record) (out []Record, rejected []Rejected, err error)
	Close() error
}

// Sink stages a batch's output and makes it visible together with the
// source positions in one atomic step.
//
// Threading contract: the engine never calls Sink methods concurrently,
// and they see one epoch at a time. For epoch e: Write (and
// DeadLetterSink.WriteRejected), then Commit; after a failed Write or
// Commit, Abort(e), then Open again. Write for e+1 comes only after
// Commit(e) returned nil, or after Open said e is committed (a commit
// whose acknowledgement was lost), never while Commit(e) runs or before
// it. Reading and transforming e+1 overlap these calls; no other Sink
// call does. Close is called once, when Run returns. Steps of a batch in
// flight get a ctx that outlives a stop by the drain timeout, so a stop
// can still commit.
type Sink interface {
	// Open returns the last committed epoch and positions of pipeline (0 and
	// nil if none). ctx bounds only the opening. After a failure the engine
	// calls Open again (without Close) to learn what was committed.
	Open(ctx context.Context, pipeline string) (epoch uint64, at Positions, err error)
	// Write stages records for epoch; nothing becomes visible. It may be
	// called several times per epoch. The sink must not retain records after
	// Write returns. ctx bounds this call.
	Write(ctx context.Context, epoch uint64, records []Record) error
	// Commit makes the staged output of epoch visible and stores until,
	// atomically. It succeeds only if the stored epoch is epoch-1 (contiguity,
	// which also fences a second writer: ErrFenced); committing the epoch
	// that is already stored with the same positions is a no-op (a retry
	// after a lost acknowledgement).
	Commit(ctx context.Context, epoch uint64, until Positions) error
	// Abort discards whatever was staged for epoch; it never touches
	// committed output (the engine may abort after a commit whose
	// acknowledgement was lost).
	Abort(ctx context.Context, epoch uint64) error
	Close() error
}

// DeadLetterSink is the optional capability of a sink that can stage
// rejected records inside the same epoch as the batch's output, so dead
// letters commit atomically with it.
type DeadLetterSink interface {
	WriteRejected(ctx context.Context, epoch uint64, rejected []Rejected) error
}

// Delivery is a pipeline's delivery guarantee.
type Delivery string

const (
	// ExactlyOnce commits output and positions atomically in the sink.
	ExactlyOnce Delivery = "exactly-once"
	// AtLeastOnce writes output, then records positions: a crash in between
	// replays (duplicates), never loses.
	AtLeastOnce Delivery = "at-least-once"
	// AtMostOnce records positions before processing: a crash in between
	// loses the batch, never duplicates.
	AtMostOnce Delivery = "at-most-once"
)

var (
	// ErrFenced means another writer committed past this one: the stored
	// epoch is not epoch-1. Fatal for this pipeline instance.
	ErrFenced = errors.New("fenced: the sink holds a different epoch; another instance of this pipeline is writing, or its checkpoint was changed")
	// ErrNotCommitted means the sink cannot say whether a commit took
	// effect; Open tells after a restart.
	ErrNotCommitted = errors.New("commit outcome unknown")
)

// RetryableError marks a transient failure (a sink or broker unreachable):
// the engine retries the batch with backoff instead of stopping. Defined in
// internal/record so plugins/sdk shares it without importing the engine.
type RetryableError = record.RetryableError

// Retryable wraps err as transient. A nil err stays nil.
func Retryable(err error) error { return record.Retryable(err) }

// IsRetryable reports whether err, or anything it wraps, is transient.
func IsRetryable(err error) bool { return record.IsRetryable(err) }
