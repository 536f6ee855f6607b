package file

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/durable"
	"github.com/sluicehq/sluice/internal/flock"
	"github.com/sluicehq/sluice/sinks/internal/commit"
)

// A pipeline split into tasks (engine.TaskSink): the layout, the steps of
// a round's commit, their fsyncs and what the file system must give are in
// the package comment (doc.go). The rules the code keeps:
//   - only the holder of the pipeline's lock reads records to decide a
//     commit, writes them or deletes them;
//   - a task's checkpoint is in the newest committed record holding it,
//     else derived from the chain's marked checkpoint (taskState.stored);
//   - a record of a round that did not commit is deleted, durably, before
//     its staging file, which would otherwise make it look committed.

const (
	tasksDir = "tasks" // under _sluice/<pipeline>: the round records
	// taskDigits pads task numbers in file names so that they sort for
	// up to 100,000 partitions; larger numbers still parse.
	taskDigits = 5
)

var _ engine.TaskSink = (*Sink)(nil)

// errTaskOutbox refuses the sinks.Outbox calls of a pipeline split into
// tasks: its dead-letter files are named by round, not by epoch.
var errTaskOutbox = errors.New("file sink: dead letters of a pipeline split into tasks cannot be forwarded to a topic yet; keep them in files (dead-letter: {file: DIR})")

// taskState is what a sink knows of a pipeline split into tasks. Only the
// commit lock's holder reads or changes the files behind it.
type taskState struct {
	dir   string        // _sluice/<pipeline>/tasks
	owned []engine.Task // the tasks OpenTasks was given
	// chain is the pipeline's single-chain checkpoint, marked as split
	// (zero epoch if the pipeline never ran as one chain). It no longer
	// changes: a process still committing the chain is fenced.
	chain checkpoint
	// records holds the committed round records by file name; a committed
	// record never changes, so each is read once.
	records map[string]taskRecord
	heads   map[engine.Task]engine.Checkpoint // each task's newest checkpoint in records
}

// taskRecord is one committed round: the new checkpoint of each of its
// tasks and the files the round made visible.
type taskRecord struct {
	Pipeline string                         `json:"pipeline"`
	Tasks    map[engine.Task]taskCheckpoint `json:"tasks"`
	Records  int64                          `json:"records"` // output records of the round
	// Part is the part file the round made visible; its rename is the
	// commit point. Empty when the round had no output.
	Part string `json:"part,omitempty"`
	// Staged is the staging file renamed to Part; see checkpoint.Staged.
	Staged      string    `json:"staged,omitempty"`
	DeadLetters string    `json:"dead_letters,omitempty"` // file name under the dead-letter folder
	Time        time.Time `json:"committed_at"`

	name string // the record's file name; not stored
}

type taskCheckpoint struct {
	Epoch     uint64           `json:"epoch"`
	Positions engine.Positions `json:"positions"`
}

// recordName names the record of a round whose lowest task t commits
// epoch; taskSuffix is the same pair for its part file and dead letters.
func recordName(epoch uint64, t engine.Task) string { return taskSuffix(epoch, t) + ".json" }

func taskSuffix(epoch uint64, t engine.Task) string {
	return fmt.Sprintf("%020d-t%0*d", epoch, taskDigits, t)
}

func taskPartName(pipeline string, epoch uint64, t engine.Task, ext string) string {
	return "part-" + pipeline + "-" + taskSuffix(epoch, t) + ext
}

func taskDeadName(epoch uint64, t engine.Task) string {
	return "dead-" + taskSuffix(epoch, t) + ".jsonl"
}

// parseTaskSuffix reads what taskSuffix wrote.
func parseTaskSuffix(s string) (uint64, engine.Task, bool) {
	if len(s) < 23 || s[20:22] != "-t" {
		return 0, 0, false
	}
	epoch, err := strconv.ParseUint(s[:20], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	t, err := strconv.ParseInt(s[22:], 10, 32)
	if err != nil || t < 0 {
		return 0, 0, false
	}
	return epoch, engine.Task(t), true
}

// low returns the lowest task of a round and its new epoch: the name of
// the round's files.
func low(cps map[engine.Task]engine.Checkpoint) (engine.Task, uint64) {
	t := slices.Min(slices.Collect(maps.Keys(cps)))
	return t, cps[t].Epoch
}

// OpenTasks recovers pipeline's directory for a process running tasks and
// returns the committed checkpoint of each of them that has one. The
// first OpenTasks of a pipeline that ran as one chain marks the chain's
// last checkpoint as split (making its open part file visible), so a
// process still committing the chain is fenced from then on. Anything
// staged is dropped; staging files are named by an instance id drawn
// afresh at every OpenTasks. It implements engine.TaskSink. ctx is only
// checked on entry.
func (s *Sink) OpenTasks(ctx context.Context, pipeline string, tasks []engine.Task) (map[engine.Task]engine.Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !flock.Works {
		return nil, errors.New("file sink: a pipeline split into tasks needs file locks (flock), which this platform lacks; run the pipeline in one process")
	}
	s.stopIdleRoller() // task mode does not roll
	s.mu.Lock()
	defer s.mu.Unlock()
	cps, err := s.openTasks(pipeline, tasks)
	if err != nil {
		s.tasks = nil // Write and CommitTasks refuse until an OpenTasks succeeds
	}
	return cps, err
}

func (s *Sink) openTasks(pipeline string, tasks []engine.Task) (map[engine.Task]engine.Checkpoint, error) {
	if err := s.prepare(pipeline); err != nil {
		return nil, err
	}
	s.fence.Advice = "another process committed the task since this one opened it; the tasks start again from the directory"
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("file sink: instance id: %w", err)
	}
	s.id = hex.EncodeToString(id[:])
	ts := &taskState{dir: filepath.Join(s.meta, tasksDir), owned: slices.Clone(tasks), records: map[string]taskRecord{}}
	if err := os.Mkdir(ts.dir, 0o755); err == nil {
		if err := durable.SyncDir(s.meta); err != nil {
			return nil, fmt.Errorf("file sink: %w", err)
		}
	} else if !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("file sink: create %s: %w", ts.dir, err)
	}
	s.tasks = ts
	if err := flock.Lock(s.lock); err != nil {
		return nil, fmt.Errorf("file sink: lock %s: %w", s.lock.Name(), err)
	}
	defer flock.Unlock(s.lock)

	// Records first: an uncommitted one must be gone, durably, before its
	// staging file is (recover deletes those), or it would look committed
	// with its part file moved away.
	if err := s.readTasks(true); err != nil {
		return nil, err
	}
	c, err := s.recover()
	if err != nil {
		return nil, err
	}
	if ts.chain, err = s.markSplit(c); err != nil {
		return nil, err
	}
	if err := s.dropOrphanTaskDead(); err != nil {
		return nil, err
	}
	out := map[engine.Task]engine.Checkpoint{}
	for _, t := range tasks {
		if cp := ts.stored(t); cp.Epoch > 0 {
			out[t] = engine.Checkpoint{Epoch: cp.Epoch, At: cp.At.Clone()}
		}
	}
	return out, nil
}

// markSplit marks the chain's last checkpoint c as split into tasks, once,
// and returns the marked one: a checkpoint file rewritten in place (epoch 0
// if the pipeline has none), which a process still committing the chain
// no longer recognises. Committed output waiting in the chain's open part
// file is copied and rolled as seal does, in the same rewrite. The caller
// holds the commit lock.
func (s *Sink) markSplit(c checkpoint) (checkpoint, error) {
	if c.Tasks {
		return c, nil
	}
	m := c
	m.Pipeline, m.Tasks = s.pipeline, true
	if m.Time.IsZero() {
		m.Time = s.now().UTC()
	}
	if c.Open != nil {
		// Copied, not adopted: a chain process may still append to it.
		s.known = c
		err := s.carry()
		s.known = checkpoint{}
		if err != nil {
			return c, err
		}
		m.Open = nil
		m.Part = partName(s.pipeline, c.Epoch, s.format)
		m.Staged = s.out.name
		m.Sealed = &openPart{File: s.out.name, Bytes: s.out.committed, Since: s.out.since}
	}
	m.from = s.checkpointPath(m.Epoch)
	if err := s.writeCheckpoint(m); err != nil {
		return c, err
	}
	if err := s.hit("tasks-chain-marked"); err != nil {
		return c, err
	}
	s.log.Info("the pipeline is split into tasks from here on; its tasks start from its last epoch", "epoch", m.Epoch)
	if s.out == nil {
		return m, nil
	}
	// From here a crash is finished by finishSeal, as for seal.
	err := os.Rename(s.out.path(), filepath.Join(s.dir, m.Part))
	if err == nil {
		s.out.close()
		s.out = nil
		err = durable.SyncDir(s.dir)
	}
	if err != nil {
		return m, fmt.Errorf("file sink: roll the open part file of epoch %d: %w", m.Epoch, err)
	}
	return m, nil
}

// stored returns task t's committed checkpoint: its newest record's, or
// the one derived from the chain.
func (ts *taskState) stored(t engine.Task) engine.Checkpoint {
	if cp, ok := ts.heads[t]; ok {
		return cp
	}
	return engine.Checkpoint{Epoch: ts.chain.Epoch, At: ts.chain.Positions.OfTask(t)}
}

// add notes a committed record.
func (ts *taskState) add(r taskRecord) {
	ts.records[r.name] = r
	for t, c := range r.Tasks {
		if h, ok := ts.heads[t]; !ok || c.Epoch > h.Epoch {
			ts.heads[t] = engine.Checkpoint{Epoch: c.Epoch, At: c.Positions}
		}
	}
}

// readTasks brings the committed records up to date with the tasks
// directory. With cleanup it also deletes temporary files and the records
// (and dead letters) of rounds that did not commit, and makes that durable.
// The caller holds the commit lock.
func (s *Sink) readTasks(cleanup bool) error {
	ts := s.tasks
	entries, err := os.ReadDir(ts.dir)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	listed := map[string]bool{}
	dropped := false
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		n, ok := strings.CutSuffix(name, ".json")
		if !ok {
			continue
		}
		epoch, task, ok := parseTaskSuffix(n)
		if !ok {
			continue
		}
		listed[name] = true
		if _, ok := ts.records[name]; ok {
			continue
		}
		r, err := s.readRecord(name, epoch, task)
		if err != nil {
			return err
		}
		ok, err = s.roundCommitted(r)
		if err != nil {
			return err
		}
		switch {
		case ok:
			ts.records[name] = r
		case cleanup:
			if err := s.dropRecord(r); err != nil {
				return err
			}
			dropped = true
		}
	}
	if dropped {
		if err := durable.SyncDir(ts.dir); err != nil {
			return fmt.Errorf("file sink: %w", err)
		}
	}
	// Only now, with no record naming them: staging files of dead
	// instances, and temporary files, which are written under the lock.
	for _, e := range entries {
		switch name := e.Name(); {
		case !cleanup:
		case strings.HasPrefix(name, tmpPref):
			os.Remove(filepath.Join(ts.dir, name))
		case strings.HasPrefix(name, stagePref):
			if removeIfDead(filepath.Join(ts.dir, name)) {
				s.log.Debug("deleted a staging file of a round that did not commit", "file", name)
			}
		}
	}
	for name := range ts.records {
		if !listed[name] {
			delete(ts.records, name) // pruned by another process
		}
	}
	ts.heads = map[engine.Task]engine.Checkpoint{}
	for _, r := range ts.records {
		ts.add(r)
	}
	return nil
}

func (s *Sink) readRecord(name string, epoch uint64, task engine.Task) (taskRecord, error) {
	path := filepath.Join(s.tasks.dir, name)
	b, err := os.ReadFile(path)
	if err != nil {
		return taskRecord{}, fmt.Errorf("file sink: %w", err)
	}
	var r taskRecord
	err = json.Unmarshal(b, &r)
	if err == nil && (r.Pipeline != s.pipeline || len(r.Tasks) == 0) {
		err = fmt.Errorf("not a round of pipeline %q", s.pipeline)
	}
	if err == nil {
		cps := make(map[engine.Task]engine.Checkpoint, len(r.Tasks))
		for t, c := range r.Tasks {
			cps[t] = engine.Checkpoint{Epoch: c.Epoch}
		}
		if t, e := low(cps); t != task || e != epoch {
			err = fmt.Errorf("its lowest task %d commits epoch %d, not what its name says", t, e)
		}
	}
	// Records are renamed into place only when complete, so a bad one was
	// edited or damaged from outside.
	if err != nil {
		return taskRecord{}, fmt.Errorf("file sink: round record %s is damaged (%v); restore it from a backup", path, err)
	}
	r.name = name
	return r, nil
}

// roundCommitted reports whether r's commit point was reached, as
// committed does for the single chain: its part file is there, or it had
// none, or its staging file is gone too (renamed, then moved away by a
// reader).
func (s *Sink) roundCommitted(r taskRecord) (bool, error) {
	if r.Part == "" {
		return true, nil
	}
	for _, p := range []string{filepath.Join(s.dir, r.Part), filepath.Join(s.tasks.dir, r.Staged)} {
		_, err := os.Lstat(p)
		if err == nil {
			return p != filepath.Join(s.tasks.dir, r.Staged), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("file sink: %w", err)
		}
	}
	return true, nil
}

// dropRecord deletes the record of a round that did not commit, and its
// dead letters; the caller makes it durable.
func (s *Sink) dropRecord(r taskRecord) error {
	s.log.Info("deleting the record of a round that did not commit", "file", r.name)
	if r.DeadLetters != "" {
		err := os.Remove(filepath.Join(s.deadRoot, s.pipeline, r.DeadLetters))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("file sink: delete dead letters of a round that did not commit: %w", err)
		}
	}
	if err := os.Remove(filepath.Join(s.tasks.dir, r.name)); err != nil {
		return fmt.Errorf("file sink: delete the record of a round that did not commit: %w", err)
	}
	return nil
}

// dropOrphanTaskDead deletes dead-letter files of rounds that have no
// committed record: a round that failed after renaming them. A committed
// record is kept while its dead letters are there (pruneRecords), so none
// of them is taken for an orphan. The caller holds the commit lock.
func (s *Sink) dropOrphanTaskDead() error {
	dir := filepath.Join(s.deadRoot, s.pipeline)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	for _, e := range entries {
		n, ok := strings.CutPrefix(e.Name(), "dead-")
		if n, ok = strings.CutSuffix(n, ".jsonl"); !ok {
			continue
		}
		epoch, t, ok := parseTaskSuffix(n)
		if !ok {
			continue
		}
		if _, ok := s.tasks.records[recordName(epoch, t)]; ok {
			continue
		}
		s.log.Info("deleting dead letters of a round that did not commit", "file", e.Name())
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("file sink: delete dead letters of a round that did not commit: %w", err)
		}
	}
	return nil
}

// CommitTasks makes round's staged output visible and stores the tasks'
// checkpoints, all or none, each on top of its previous epoch; the package
// comment lists the steps. It implements
// engine.TaskSink. ctx is only checked on entry.
func (s *Sink) CommitTasks(ctx context.Context, round uint64, cps map[engine.Task]engine.Checkpoint) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.tasks
	if ts == nil {
		return errors.New("file sink: CommitTasks before OpenTasks")
	}
	if err := s.staged.CheckCommit(round); err != nil {
		return err
	}
	for t := range cps {
		if !slices.Contains(ts.owned, t) {
			return fmt.Errorf("file sink: CommitTasks of task %d, which OpenTasks was not given (%v)", t, ts.owned)
		}
	}
	if len(cps) == 0 {
		if s.out != nil && s.out.size > 0 || s.dead != nil && s.dead.records > 0 {
			return fmt.Errorf("file sink: round %d staged output but commits no task", round)
		}
		s.dropStaged()
		return nil
	}
	// The output's fsync needs no lock.
	if s.out != nil {
		if err := s.out.sync(); err != nil {
			return fmt.Errorf("file sink: commit round %d: %w", round, err)
		}
	}
	if err := s.hit("tasks-staged-synced"); err != nil {
		return err
	}
	if err := flock.Lock(s.lock); err != nil {
		return fmt.Errorf("file sink: lock %s: %w", s.lock.Name(), err)
	}
	defer flock.Unlock(s.lock)

	if err := s.readTasks(false); err != nil {
		return err
	}
	switch v, t := commit.CheckTasks(cps, ts.stored); v {
	case commit.Done:
		// A retry after a lost acknowledgement: the output is there already.
		s.dropStaged()
		return nil
	case commit.Fenced:
		return s.fence.Error(cps[t].Epoch, fmt.Sprintf("the directory holds epoch %d of task %d", ts.stored(t).Epoch, t))
	}
	return s.commitRound(cps)
}

// commitRound writes a checked round; the caller holds the commit lock.
func (s *Sink) commitRound(cps map[engine.Task]engine.Checkpoint) error {
	t, epoch := low(cps)
	r := taskRecord{Pipeline: s.pipeline, Tasks: make(map[engine.Task]taskCheckpoint, len(cps)),
		Time: s.now().UTC(), name: recordName(epoch, t)}
	for t, c := range cps {
		r.Tasks[t] = taskCheckpoint{Epoch: c.Epoch, Positions: c.At.Clone()}
	}
	if s.out != nil && s.out.size > 0 {
		r.Records = s.out.records
		r.Part = taskPartName(s.pipeline, epoch, t, s.format.Ext())
		r.Staged = s.out.name
	}
	if s.dead != nil && s.dead.records > 0 {
		// Before the record: dead letters of a round that then fails are
		// deleted by OpenTasks (dropRecord, dropOrphanTaskDead).
		if _, err := s.publishDeadAs(epoch, taskDeadName(epoch, t)); err != nil {
			return err
		}
		r.DeadLetters = taskDeadName(epoch, t)
		if err := s.hit("tasks-dead-letters-renamed"); err != nil {
			return err
		}
	} else if err := os.Remove(filepath.Join(s.deadRoot, s.pipeline, taskDeadName(epoch, t))); err != nil && !errors.Is(err, os.ErrNotExist) {
		// Left by an earlier attempt at this round that failed.
		return fmt.Errorf("file sink: remove dead letters of an earlier attempt at epoch %d of task %d: %w", epoch, t, err)
	}
	// The record: temporary file, fsync, rename, fsync of the directory.
	// A failpoint returns at once, as a crash would; a real failure after
	// the rename takes the record back.
	tmp, err := s.writeRecordTmp(r)
	if err != nil {
		return err
	}
	if err := s.hit("tasks-record-tmp-synced"); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.tasks.dir, r.name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("file sink: write round record %s: %w", r.name, err)
	}
	if err := s.hit("tasks-record-renamed"); err != nil {
		return err
	}
	if err := durable.SyncDir(s.tasks.dir); err != nil {
		err = fmt.Errorf("file sink: write round record %s: %w", r.name, err)
		if r.Part == "" {
			// The rename was the commit point; whether it lasts is unknown.
			return fmt.Errorf("%w: %w", engine.ErrNotCommitted, err)
		}
		return s.unstore(r, err)
	}
	if err := s.hit("tasks-record-stored"); err != nil {
		return err
	}
	if r.Part != "" {
		// The commit point.
		part := filepath.Join(s.dir, r.Part)
		if err := os.Rename(s.out.path(), part); err != nil {
			err = fmt.Errorf("file sink: commit epoch %d of task %d: %w", epoch, t, err)
			_, serr := os.Lstat(s.out.path())
			if _, perr := os.Lstat(part); perr == nil && errors.Is(serr, os.ErrNotExist) {
				// It happened all the same (a network file system's retry).
				return fmt.Errorf("%w: %w", engine.ErrNotCommitted, err)
			}
			return s.unstore(r, err)
		}
		s.out.close()
		s.out = nil
		if err := s.hit("tasks-part-renamed"); err != nil {
			return err
		}
		if err := durable.SyncDir(s.dir); err != nil {
			return fmt.Errorf("%w: epoch %d of task %d: %w", engine.ErrNotCommitted, epoch, t, err)
		}
	} else if s.out != nil {
		s.dropOut() // empty
	}
	s.staged.Epoch = 0
	s.tasks.add(r)
	s.pruneRecords()
	return nil
}

// writeRecordTmp writes r to a temporary file in the tasks directory and
// fsyncs it; it returns the file's path.
func (s *Sink) writeRecordTmp(r taskRecord) (string, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("file sink: encode round record: %w", err)
	}
	tmp := filepath.Join(s.tasks.dir, tmpPref+s.id)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return "", fmt.Errorf("file sink: write round record: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("file sink: write round record %s: %w", r.name, err)
	}
	return tmp, nil
}

// unstore takes back the record of a round whose part file was not
// renamed, so the round stays uncommitted once the staging file is gone
// too (Abort deletes it). If the record cannot be deleted, the staging
// file is left to the next OpenTasks, which deletes the record first.
func (s *Sink) unstore(r taskRecord, cause error) error {
	err := os.Remove(filepath.Join(s.tasks.dir, r.name))
	if err == nil {
		err = durable.SyncDir(s.tasks.dir)
	}
	if err != nil {
		s.log.Warn("cannot delete the record of a round that failed; the next OpenTasks does", "file", r.name, "err", err)
		s.out.close()
		s.out = nil
	}
	return cause
}

// pruneRecords deletes the records every task of which has a newer one,
// except those whose dead letters are still there (dropOrphanTaskDead
// tells committed dead letters by their record). Failures leave garbage
// only, so they are logged; a deletion a crash undoes is pruned again.
func (s *Sink) pruneRecords() {
	ts := s.tasks
	for name, r := range ts.records {
		obsolete := true
		for t, c := range r.Tasks {
			if ts.heads[t].Epoch <= c.Epoch {
				obsolete = false
				break
			}
		}
		if !obsolete {
			continue
		}
		if r.DeadLetters != "" {
			if _, err := os.Lstat(filepath.Join(s.deadRoot, s.pipeline, r.DeadLetters)); err == nil {
				continue
			}
		}
		if err := os.Remove(filepath.Join(ts.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("cannot delete an old round record", "file", name, "err", err)
			continue
		}
		delete(ts.records, name)
	}
}
