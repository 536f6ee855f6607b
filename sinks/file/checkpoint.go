package file

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/durable"
)

// checkpoint is one committed (or, until Open decides, possibly
// uncommitted) epoch of one pipeline: _sluice/<pipeline>/<epoch>.json.
type checkpoint struct {
	Pipeline  string           `json:"pipeline"`
	Epoch     uint64           `json:"epoch"`
	Positions engine.Positions `json:"positions"`
	Records   int64            `json:"records"` // output records of this epoch
	// Part is the part file this epoch's commit made visible; its rename is
	// the commit point. Empty when the epoch made no file visible: then the
	// checkpoint's own rename was the commit point.
	Part string `json:"part,omitempty"`
	// Staged is the staging file that is renamed to Part. While it exists
	// the rename has not happened, so a missing Part with a missing staging
	// file means a reader moved the part file away, not a crash.
	Staged string `json:"staged,omitempty"`
	// Open is committed output not yet visible because the roll policy
	// combines epochs.
	Open *openPart `json:"open,omitempty"`
	// Sealed marks a checkpoint rewritten after its epoch committed, to make
	// the output that was Open visible as Part without a new epoch (when
	// the sink closes or the part file grows old while no batch comes; see
	// seal). The epoch committed before, so unlike a rolling commit a
	// missing Part with the staging file present does not mean the epoch
	// failed: the rename is still to happen, and Open finishes it.
	Sealed      *openPart `json:"sealed,omitempty"`
	DeadLetters string    `json:"dead_letters,omitempty"` // the committed dead-letter file
	Time        time.Time `json:"committed_at"`
	// Tasks marks the chain's last checkpoint once the pipeline is split
	// into tasks (markSplit, tasks.go): the chain ends here, tasks without a
	// round record of their own start from it, and a process still
	// committing the chain is fenced, since the checkpoint it knows changed.
	Tasks bool `json:"tasks,omitempty"`

	// from is the file the checkpoint was read from (a checkpoint file or
	// a slot), for messages; not stored.
	from string
}

type openPart struct {
	File  string    `json:"file"`  // staging file under _sluice/<pipeline>
	Bytes int64     `json:"bytes"` // its committed length
	Since time.Time `json:"since"` // when its first epoch was staged
}

// same reports whether c and d describe the same stored state.
func (c checkpoint) same(d checkpoint) bool {
	if c.Epoch != d.Epoch || !c.Positions.Equal(d.Positions) || (c.Open == nil) != (d.Open == nil) || c.Tasks != d.Tasks {
		return false
	}
	return c.Open == nil || (c.Open.File == d.Open.File && c.Open.Bytes == d.Open.Bytes && c.Open.Since.Equal(d.Open.Since))
}

func (s *Sink) checkpointPath(epoch uint64) string {
	return filepath.Join(s.meta, fmt.Sprintf("%020d.json", epoch))
}

// writeCheckpoint makes c durable under its final name: temporary file,
// fsync, rename, fsync of the directory.
func (s *Sink) writeCheckpoint(c checkpoint) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("file sink: encode checkpoint: %w", err)
	}
	tmp := filepath.Join(s.meta, tmpPref+s.id)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("file sink: write checkpoint: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if err := s.hit("checkpoint-tmp-synced"); err != nil {
			return err // a simulated crash leaves the temporary file behind
		}
		err = os.Rename(tmp, s.checkpointPath(c.Epoch))
	}
	if err == nil {
		err = durable.SyncDir(s.meta)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("file sink: write checkpoint of epoch %d: %w", c.Epoch, err)
	}
	return nil
}

// listCheckpoints returns the epochs that have a checkpoint file, newest
// first.
func (s *Sink) listCheckpoints() ([]uint64, []os.DirEntry, error) {
	entries, err := os.ReadDir(s.meta)
	if err != nil {
		return nil, nil, fmt.Errorf("file sink: %w", err)
	}
	var epochs []uint64
	for _, e := range entries {
		n, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || len(n) != 20 {
			continue
		}
		if ep, err := strconv.ParseUint(n, 10, 64); err == nil {
			epochs = append(epochs, ep)
		}
	}
	slices.Sort(epochs)
	slices.Reverse(epochs)
	return epochs, entries, nil
}

func (s *Sink) readCheckpoint(epoch uint64) (checkpoint, error) {
	var c checkpoint
	path := s.checkpointPath(epoch)
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("file sink: %w", err)
	}
	// Checkpoints are renamed into place only when complete, so a bad one
	// was edited or damaged from outside.
	if err := json.Unmarshal(b, &c); err != nil || c.Epoch != epoch || c.Pipeline != s.pipeline {
		return c, fmt.Errorf("file sink: checkpoint %s is damaged or not for pipeline %q (%v); restore it from a backup, or delete it to roll back to the epoch before", path, s.pipeline, err)
	}
	c.from = path
	return c, nil
}

// committed reports whether c's commit point was reached.
func (s *Sink) committed(c checkpoint) (bool, error) {
	if c.Part == "" || c.Sealed != nil {
		return true, nil
	}
	if _, err := os.Lstat(filepath.Join(s.dir, c.Part)); err == nil {
		return true, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("file sink: %w", err)
	}
	if c.Staged != "" {
		if _, err := os.Lstat(filepath.Join(s.meta, c.Staged)); errors.Is(err, os.ErrNotExist) {
			// Renamed, then moved away by a reader: committed.
			return true, nil
		}
	}
	return false, nil
}

// newestCommitted returns the newest committed checkpoint (zero if none),
// from the checkpoint files and the slots. With cleanup it deletes the
// checkpoint files of epochs above it, which never committed.
func (s *Sink) newestCommitted(cleanup bool) (checkpoint, error) {
	epochs, _, err := s.listCheckpoints()
	if err != nil {
		return checkpoint{}, err
	}
	slot, err := s.newestSlot()
	if err != nil {
		return checkpoint{}, err
	}
	for _, ep := range epochs {
		// A slot is written only at a commit point, so it is committed. For
		// the same epoch the file wins: only seal writes a file for an
		// epoch a slot holds, and it writes the newer state.
		if slot.Epoch > ep {
			return slot, nil
		}
		c, err := s.readCheckpoint(ep)
		if err != nil {
			return checkpoint{}, err
		}
		ok, err := s.committed(c)
		if err != nil {
			return checkpoint{}, err
		}
		if ok {
			return c, nil
		}
		if cleanup {
			s.log.Info("deleting the checkpoint of an epoch that did not commit", "epoch", ep)
			if err := os.Remove(s.checkpointPath(ep)); err != nil {
				return checkpoint{}, fmt.Errorf("file sink: %w", err)
			}
		}
	}
	return slot, nil
}

// recover finds the last committed epoch and deletes what uncommitted epochs
// and crashed instances left: newer checkpoints, temporary files, staging
// files nobody holds, dead letters of uncommitted epochs. The caller holds
// the commit lock.
func (s *Sink) recover() (checkpoint, error) {
	c, err := s.newestCommitted(true)
	if err != nil {
		return c, err
	}
	if c.Tasks && s.tasks == nil {
		return c, fmt.Errorf("file sink: pipeline %q in %s is split into tasks (%s); it cannot go back to one chain: run it split into tasks, or write it to a new directory",
			s.pipeline, s.dir, filepath.Join(s.meta, tasksDir))
	}
	if err := s.finishSeal(c); err != nil {
		return c, err
	}
	if c.Epoch == 0 && (s.tasks == nil || len(s.tasks.records) == 0) {
		if err := s.noOrphanParts(); err != nil {
			return c, err
		}
	}
	_, entries, err := s.listCheckpoints()
	if err != nil {
		return c, err
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, tmpPref):
			os.Remove(filepath.Join(s.meta, name))
		case strings.HasPrefix(name, stagePref):
			if c.Open != nil && c.Open.File == name {
				continue
			}
			if removeIfDead(filepath.Join(s.meta, name)) {
				s.log.Debug("deleted a staging file of an epoch that did not commit", "file", name)
			}
		}
	}
	dead, err := s.deadEpochs()
	if err != nil {
		return c, err
	}
	for _, ep := range dead {
		if ep <= c.Epoch {
			continue
		}
		if err := os.Remove(filepath.Join(s.deadRoot, s.pipeline, deadName(ep))); err != nil {
			return c, fmt.Errorf("file sink: delete dead letters of uncommitted epoch %d: %w", ep, err)
		}
	}
	return c, nil
}

// noOrphanParts refuses to start from scratch over part files of the same
// pipeline: without their checkpoint, starting over would write that
// output a second time.
func (s *Sink) noOrphanParts() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	prefix := "part-" + s.pipeline + "-"
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		// part-NAME-EPOCH.ext, or a round's part-NAME-EPOCH-tTASK.ext
		stem, _, _ := strings.Cut(rest, ".")
		_, _, round := parseTaskSuffix(stem)
		if !round && (len(rest) < 21 || rest[20] != '.') {
			continue
		}
		if _, err := strconv.ParseUint(rest[:20], 10, 64); err == nil {
			return fmt.Errorf("file sink: %s holds output of pipeline %q (%s) but no checkpoint in %s; starting over would write it again: move the part files away, or restore the checkpoints",
				s.dir, s.pipeline, e.Name(), s.meta)
		}
	}
	return nil
}
