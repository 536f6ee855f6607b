// Package commit holds the rules every transactional sink applies to its
// epochs (ARCHITECTURE §3, §4): one epoch staged at a time, a commit only
// on top of the epoch before it, a repeated commit of the stored epoch with
// the same positions as a no-op, and everything else refused with
// engine.ErrFenced. Sinks keep their own storage; this package only decides.
package commit

import (
	"fmt"

	"github.com/sluicehq/sluice/engine"
)

// Staged is the epoch a sink has staged and not yet committed or aborted;
// 0 if none. Sink names the sink in messages ("file sink").
type Staged struct {
	Sink  string
	Epoch uint64
}

// CheckWrite refuses a Write of epoch while another epoch is staged.
func (s *Staged) CheckWrite(epoch uint64) error {
	if s.Epoch != 0 && s.Epoch != epoch {
		return fmt.Errorf("%s: epoch %d is staged and not committed; commit or abort it before writing epoch %d", s.Sink, s.Epoch, epoch)
	}
	return nil
}

// CheckCommit refuses a Commit of epoch while another epoch is staged.
func (s *Staged) CheckCommit(epoch uint64) error {
	if s.Epoch != 0 && s.Epoch != epoch {
		return fmt.Errorf("%s: commit of epoch %d while epoch %d is staged; abort it first", s.Sink, epoch, s.Epoch)
	}
	return nil
}

// Verdict is what a commit finds stored.
type Verdict int

const (
	// Next: the stored epoch is the one before; the commit goes ahead.
	Next Verdict = iota
	// Done: the epoch is stored with the same positions, a retry after a
	// lost acknowledgement or a replay of the committed batch; the commit
	// succeeds without writing anything.
	Done
	// Fenced: anything else; another writer committed, or the
	// checkpoint was changed. The commit fails with engine.ErrFenced.
	Fenced
)

// Check decides a commit of epoch at until over the stored epoch and
// positions.
func Check(epoch uint64, until engine.Positions, stored uint64, at engine.Positions) Verdict {
	switch {
	case stored == epoch && at.Equal(until):
		return Done
	case stored == epoch-1:
		return Next
	}
	return Fenced
}

// Fence is the error for a refused commit: it wraps engine.ErrFenced and
// says where (the directory, table or topic holding the checkpoint), what
// was found there and what to do.
type Fence struct {
	Sink     string // "file sink"
	Pipeline string
	Where    string
	Advice   string // "run one instance of a pipeline per directory"
}

// Error returns the error for a refused commit of epoch; found says what
// the sink holds instead ("the table holds epoch 7").
func (f Fence) Error(epoch uint64, found string) error {
	return fmt.Errorf("%s: %w: pipeline %q in %s: commit of epoch %d needs epoch %d stored, %s; %s",
		f.Sink, engine.ErrFenced, f.Pipeline, f.Where, epoch, epoch-1, found, f.Advice)
}
