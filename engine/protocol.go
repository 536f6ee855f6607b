package engine

import (
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/internal/backoff"
)

// Action is the next step the protocol asks the runner to perform. The
// runner performs it with I/O and reports back with Opened, Read, Done or
// Failed; the protocol itself does no I/O, so tests drive it step by step.
type Action int

const (
	// ActOpen: ask the sink (and, outside exactly-once, the checkpoint
	// store) what was committed last, then call Opened.
	ActOpen Action = iota
	// ActFillGap: at-most-once recovery. The checkpoint is one epoch ahead
	// of the sink (a crash between saving positions and committing output):
	// commit an empty Batch() so the sink catches up; those records are lost,
	// as at-most-once allows.
	ActFillGap
	// ActOpenSource: open the source at Committed() positions.
	ActOpenSource
	// ActRead: ask the source for the next records, then call Read.
	ActRead
	// ActSavePositions: store Batch().Until in the checkpoint store
	// (before processing for at-most-once, after the sink for at-least-once).
	ActSavePositions
	// ActProcess: run the batch through the transform chain.
	ActProcess
	// ActWrite: stage the transformed batch (and its dead letters) in the sink.
	ActWrite
	// ActCommit: Sink.Commit(Batch().Epoch, Batch().Until).
	ActCommit
	// ActAcknowledge: tell the source Batch().Until is committed.
	ActAcknowledge
	// ActAbort: discard what the sink staged for Batch().Epoch (best effort).
	ActAbort
	// ActBackoff: wait Backoff(), then report Done; the protocol starts over
	// from ActOpen so the sink says where to resume.
	ActBackoff
	// ActStop: the pipeline stops with Err().
	ActStop
)

var actionNames = [...]string{"open", "fill-gap", "open-source", "read", "save-positions",
	"process", "write", "commit", "acknowledge", "abort", "backoff", "stop"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Backoff bounds for retrying transient failures.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// Protocol is the commit protocol of one pipeline as a state machine
// (docs/ARCHITECTURE.md §4). It decides the order of sink, checkpoint and source steps
// for each delivery mode, numbers epochs, and turns failures into a
// restart from what the sink has committed.
type Protocol struct {
	delivery Delivery
	next     Action

	epoch uint64    // last committed epoch
	at    Positions // positions after the last committed epoch

	batch    Batch // the batch in flight (Records unused here)
	inFlight bool
	staged   bool // the sink may hold staged output for batch.Epoch

	attempt int // consecutive failures
	// fencedRetries makes ErrFenced a retryable failure: in a pipeline
	// split into tasks it means another process took a task over.
	fencedRetries bool
	err           error
	backoff       backoff.Policy
}

// NewProtocol returns a protocol for delivery that starts with ActOpen.
func NewProtocol(delivery Delivery) *Protocol {
	return &Protocol{
		delivery: delivery,
		next:     ActOpen,
		backoff:  backoff.Policy{Min: minBackoff, Max: maxBackoff},
	}
}

// Next returns the action to perform now.
func (p *Protocol) Next() Action { return p.next }

// Committed returns the last committed epoch and positions.
func (p *Protocol) Committed() (uint64, Positions) { return p.epoch, p.at }

// Batch returns the batch in flight (or, for ActFillGap, the empty batch
// that closes the gap).
func (p *Protocol) Batch() Batch { return p.batch }

// Err is why the protocol stopped.
func (p *Protocol) Err() error { return p.err }

// Attempt is the number of consecutive failures so far.
func (p *Protocol) Attempt() int { return p.attempt }

// SetMinBackoff changes the first retry's wait (default 100ms).
func (p *Protocol) SetMinBackoff(d time.Duration) { p.backoff.Min = d }

// Backoff is how long to wait before the next attempt: exponential from
// the minimum backoff, capped at maxBackoff, or the failure's own hint
// (also capped).
func (p *Protocol) Backoff() time.Duration {
	d := p.backoff.Delay(p.attempt)
	var r *RetryableError
	if errors.As(p.err, &r) && r.After > 0 {
		d = r.After
	}
	return min(d, maxBackoff)
}

func (p *Protocol) expect(a Action) {
	if p.next != a {
		panic(fmt.Sprintf("engine: protocol reported %s while %s was pending", a, p.next))
	}
}

// Opened reports what the sink and the checkpoint store hold. Exactly-once
// trusts only the sink; the other modes resume from whichever is ahead.
func (p *Protocol) Opened(sinkEpoch uint64, sinkAt Positions, cpEpoch uint64, cpAt Positions) {
	p.expect(ActOpen)
	p.inFlight, p.staged = false, false
	p.epoch, p.at = sinkEpoch, sinkAt.Clone()
	if p.delivery != ExactlyOnce && cpEpoch > sinkEpoch {
		// The checkpoint store ran ahead of the sink. Only at-most-once
		// saves positions before the sink commits, and then by one epoch;
		// a sink that keeps no state (stdout) always reports 0.
		p.batch = Batch{Epoch: cpEpoch, From: cpAt.Clone(), Until: cpAt.Clone()}
		p.next = ActFillGap
		return
	}
	p.next = ActOpenSource
}

// Read reports what the source returned: n records ending at until. With no
// records the protocol asks to read again.
func (p *Protocol) Read(n int, until Positions) {
	p.expect(ActRead)
	if n == 0 && (until == nil || until.Equal(p.at)) {
		return
	}
	p.batch = Batch{Epoch: p.epoch + 1, From: p.at, Until: p.at.Merge(until)}
	p.inFlight = true
	if p.delivery == AtMostOnce {
		p.next = ActSavePositions
	} else {
		p.next = ActProcess
	}
}

// Reopen starts over from the sink between batches, without a failure:
// the assignment of a pipeline split into tasks changed.
func (p *Protocol) Reopen() {
	p.expect(ActRead)
	p.next = ActOpen
}

// Done reports that the pending action succeeded.
func (p *Protocol) Done() {
	switch p.next {
	case ActOpen, ActRead, ActStop:
		panic(fmt.Sprintf("engine: Done reported for %s", p.next))
	case ActFillGap:
		p.epoch, p.at = p.batch.Epoch, p.batch.Until
		p.next = ActOpenSource
	case ActOpenSource:
		p.next = ActRead
	case ActSavePositions:
		if p.delivery == AtMostOnce {
			p.next = ActProcess
		} else {
			p.next = ActAcknowledge
		}
	case ActProcess:
		p.next = ActWrite
	case ActWrite:
		p.staged = true
		p.next = ActCommit
	case ActCommit:
		p.epoch, p.at = p.batch.Epoch, p.batch.Until
		p.staged = false
		p.attempt = 0
		if p.delivery == AtLeastOnce {
			p.next = ActSavePositions
		} else {
			p.next = ActAcknowledge
		}
	case ActAcknowledge:
		p.inFlight = false
		p.next = ActRead
	case ActAbort:
		p.staged = false
		p.afterFailure()
	case ActBackoff:
		p.next = ActOpen
	}
}

// Failed reports that the pending action failed with err. A retryable error
// leads to abort (if anything may be staged), backoff and a fresh start from
// the sink's committed state; any other error stops the pipeline. A failed
// acknowledgement only delays lag reporting, so it is retried with the next
// batch's instead.
func (p *Protocol) Failed(err error) {
	if err == nil {
		panic("engine: Failed(nil)")
	}
	if p.next == ActAcknowledge {
		p.inFlight = false
		p.next = ActRead
		return
	}
	if p.next == ActAbort {
		// The abort was best effort; what it failed to discard stays
		// invisible and is replaced when the epoch is written again.
		p.staged = false
		p.afterFailure()
		return
	}
	p.err = fmt.Errorf("%s: %w", p.next, err)
	if p.next == ActStop || p.next == ActBackoff {
		p.next = ActStop
		return
	}
	if errors.Is(err, ErrFenced) && !p.fencedRetries {
		p.attempt = 0
	} else {
		p.attempt++
	}
	if p.staged || p.next == ActWrite || p.next == ActCommit {
		p.next = ActAbort
		return
	}
	p.afterFailure()
}

func (p *Protocol) afterFailure() {
	p.inFlight = false
	fenced := errors.Is(p.err, ErrFenced)
	if fenced && p.fencedRetries || IsRetryable(p.err) && !fenced {
		p.next = ActBackoff
	} else {
		p.next = ActStop
	}
}
