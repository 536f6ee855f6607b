package file

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/durable"
	"github.com/sluicehq/sluice/internal/flock"
	"github.com/sluicehq/sluice/sinks"
	"github.com/sluicehq/sluice/sinks/internal/commit"
	"github.com/sluicehq/sluice/sinks/internal/recordfmt"
)

const (
	// keepCheckpoints is how many checkpoints per pipeline stay on disk.
	// Recovery needs only the newest committed one and the one below an
	// uncommitted leftover; the rest are history for a person debugging.
	keepCheckpoints = 3
	// writeBuffer is the bufio size in front of a staging file: large enough
	// that 100-byte records cost one write(2) per ~10,000 of them.
	writeBuffer = 1 << 20

	metaDir   = "_sluice"       // per-pipeline checkpoints, lock and staging
	deadDir   = "_dead-letters" // per-pipeline committed dead letters
	lockName  = ".lock"
	stagePref = ".stage-"
	tmpPref   = ".ckpt-"
)

// Roll says when committed output becomes visible: epochs are appended to
// one part file that is made visible (rolled) once it is big or old
// enough, or every epoch is its own part file (PerEpoch).
type Roll struct {
	// Bytes: roll the part file at the first commit that finds it holding
	// at least this many bytes; 0 = no size condition.
	Bytes int64
	// Interval: roll the part file at the first commit at least this long
	// after its first epoch was staged, or once it is this old while no
	// epoch is staged (rollWhenOld); 0 = no age condition.
	Interval time.Duration
	// PerEpoch: every epoch with output is its own part file, visible at
	// its commit; Bytes and Interval are ignored.
	PerEpoch bool
}

// DefaultRoll is what a file sink without a roll setting does; the
// constants say why these numbers.
var DefaultRoll = Roll{Bytes: DefaultRollBytes, Interval: DefaultRollInterval}

func (r Roll) perEpoch() bool { return r.PerEpoch }

// Sink is the exactly-once file sink. One Sink serves one pipeline at a
// time; the engine calls it from one goroutine at a time. Several Sinks, in
// one process or many, may share a directory.
type Sink struct {
	// mu serialises the engine's calls with the idle roller, the one
	// goroutine of the sink's own (see rollWhenOld).
	mu sync.Mutex

	dir    string
	format recordfmt.Format
	roll   Roll
	log    *slog.Logger
	base   *slog.Logger
	id     string // names this instance's staging files
	// deadRoot holds dead letters, one folder per pipeline; by default
	// <path>/_dead-letters, hidden from readers of the output.
	deadRoot string
	seq      int

	pipeline string
	meta     string   // dir/_sluice/<pipeline>
	lock     *os.File // flock'ed during recovery and commit
	known    checkpoint
	staged   commit.Staged // epoch with staged output
	fence    commit.Fence
	out      *stage // output; with rolling it carries committed bytes across epochs
	dead     *stage // dead letters of the staged epoch
	// tasks is the state of a pipeline split into tasks, from OpenTasks
	// on (tasks.go); nil when the sink was opened with Open.
	tasks *taskState

	// failpoint, set by tests, is called after each step of Commit; an error
	// stops the commit there, as a crash would.
	failpoint func(step string) error
	now       func() time.Time // the clock for roll intervals

	// The idle roller, running from Open to Close when the roll has an
	// interval. Only the engine's goroutine starts and stops it.
	idleStop chan struct{}
	idleDone chan struct{}
}

// New returns a file sink writing into cfg.Path, created if missing,
// logging to log (nil: slog.Default()). Dead letters go to
// deadLetterDir/<pipeline>/dead-<epoch>.jsonl (the pipeline's
// dead-letter: {file: DIR}); "" keeps them in the hidden _dead-letters
// folder under cfg.Path. deadLetterDir must be on the same file system as
// cfg.Path: the files are renamed into place.
func New(cfg Config, log *slog.Logger, deadLetterDir string) (*Sink, error) {
	if cfg.Path == "" {
		return nil, errors.New("file sink: path is empty; write path: DIR, the directory that receives the part files")
	}
	f, err := recordfmt.Parse(cfg.Format)
	if err != nil {
		return nil, fmt.Errorf("file sink: %w", err)
	}
	roll := DefaultRoll
	if r := cfg.Roll; r != nil {
		switch {
		case r.Bytes < 0 || r.Interval < 0:
			return nil, errors.New("file sink: roll bytes and interval cannot be negative; write roll: {bytes: 134217728, interval: 1m}, or roll: {per-epoch: true} for one part file per epoch")
		case r.PerEpoch:
			roll = Roll{PerEpoch: true}
		case r.Bytes == 0 && r.Interval == 0:
			return nil, errors.New("file sink: roll has neither bytes nor interval, so committed output would stay hidden until the pipeline stops; set bytes or interval, or per-epoch: true for one part file per epoch")
		default:
			roll = Roll{Bytes: r.Bytes, Interval: r.Interval.D()}
		}
	}
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("file sink: instance id: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	if deadLetterDir == "" {
		deadLetterDir = filepath.Join(cfg.Path, deadDir)
	}
	return &Sink{
		dir:      cfg.Path,
		format:   f,
		roll:     roll,
		now:      time.Now,
		base:     log.With("sink", "file", "path", cfg.Path),
		deadRoot: deadLetterDir,
		id:       hex.EncodeToString(id[:]),
		staged:   commit.Staged{Sink: "file sink"},
	}, nil
}

// Open recovers the directory for pipeline: it deletes what uncommitted
// epochs left behind and returns the last committed epoch and positions.
// Calling Open again discards anything staged and recovers afresh. ctx is
// only checked on entry; file system calls are not interruptible.
func (s *Sink) Open(ctx context.Context, pipeline string) (uint64, engine.Positions, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	epoch, at, err := s.open(pipeline)
	if err == nil {
		s.startIdleRoller()
	}
	return epoch, at, err
}

func (s *Sink) open(pipeline string) (uint64, engine.Positions, error) {
	if err := s.prepare(pipeline); err != nil {
		return 0, nil, err
	}
	if err := flock.Lock(s.lock); err != nil {
		return 0, nil, fmt.Errorf("file sink: lock %s: %w", s.lock.Name(), err)
	}
	defer flock.Unlock(s.lock)

	c, err := s.recover()
	if err != nil {
		return 0, nil, err
	}
	if err := s.makeSlots(); err != nil {
		return 0, nil, err
	}
	s.known = c
	if err := s.carry(); err != nil {
		return 0, nil, err
	}
	if c.Epoch == 0 {
		return 0, nil, nil
	}
	return c.Epoch, c.Positions.Clone(), nil
}

// prepare points the sink at pipeline's files, creating its directories,
// and opens its commit lock without taking it. Anything staged is dropped.
func (s *Sink) prepare(pipeline string) error {
	if err := checkPipelineName(pipeline); err != nil {
		return err
	}
	s.reset()
	s.pipeline = pipeline
	s.meta = filepath.Join(s.dir, metaDir, pipeline)
	s.log = s.base.With("pipeline", pipeline)
	s.fence = commit.Fence{Sink: "file sink", Pipeline: pipeline, Where: s.dir,
		Advice: "run one instance of a pipeline per directory, and do not edit " + s.meta}
	if err := os.MkdirAll(s.meta, 0o755); err != nil {
		return fmt.Errorf("file sink: create %s: %w; the sink needs a writable directory", s.meta, err)
	}
	// Make the directories themselves durable before anything in them counts.
	for _, d := range []string{filepath.Dir(s.meta), s.dir} {
		if err := durable.SyncDir(d); err != nil {
			return fmt.Errorf("file sink: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(s.meta, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	s.lock = lock
	return nil
}

// Write stages records for epoch in a hidden staging file.
func (s *Sink) Write(ctx context.Context, epoch uint64, records []engine.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.beginEpoch(ctx, epoch); err != nil {
		return err
	}
	if len(records) == 0 {
		return nil
	}
	st, err := s.stageOut()
	if err != nil {
		return err
	}
	for i := range records {
		if err := st.append(s.format, &records[i]); err != nil {
			return fmt.Errorf("file sink: stage epoch %d: %w", epoch, err)
		}
	}
	return nil
}

// WriteRejected stages dead letters for epoch; they become visible under
// _dead-letters/<pipeline>/ in the same commit as the epoch's output. It
// implements engine.DeadLetterSink.
func (s *Sink) WriteRejected(ctx context.Context, epoch uint64, rejected []engine.Rejected) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.beginEpoch(ctx, epoch); err != nil {
		return err
	}
	if len(rejected) == 0 {
		return nil
	}
	if s.dead == nil {
		st, err := s.newStage(s.stageDir(), ".dead")
		if err != nil {
			return err
		}
		s.dead = st
	}
	for i := range rejected {
		rec := sinks.DeadLetter(rejected[i])
		if err := s.dead.append(recordfmt.JSONL, &rec); err != nil {
			return fmt.Errorf("file sink: stage dead letters of epoch %d: %w", epoch, err)
		}
	}
	return nil
}

func (s *Sink) beginEpoch(ctx context.Context, epoch uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.lock == nil {
		return errors.New("file sink: Write before Open")
	}
	if err := s.staged.CheckWrite(epoch); err != nil {
		return err
	}
	s.staged.Epoch = epoch
	return nil
}

// Commit makes epoch's staged output visible and stores until; see the
// package comment for the order of steps and why it is atomic.
func (s *Sink) Commit(ctx context.Context, epoch uint64, until engine.Positions) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil {
		return errors.New("file sink: Commit before Open")
	}
	if s.tasks != nil {
		return errors.New("file sink: Commit after OpenTasks; a pipeline split into tasks commits with CommitTasks")
	}
	if err := s.staged.CheckCommit(epoch); err != nil {
		return err
	}
	if err := flock.Lock(s.lock); err != nil {
		return fmt.Errorf("file sink: lock %s: %w", s.lock.Name(), err)
	}
	defer flock.Unlock(s.lock)

	stored, err := s.newestCommitted(false)
	if err != nil {
		return err
	}
	switch commit.Check(epoch, until, stored.Epoch, stored.Positions) {
	case commit.Done:
		// A retry after a lost acknowledgement: the output is there already.
		s.known = stored
		s.dropStaged()
		s.dropOut()
		return s.carry()
	case commit.Fenced:
		return s.fence.Error(epoch, fmt.Sprintf("the directory holds epoch %d", stored.Epoch))
	}
	if !stored.same(s.known) {
		return s.fence.Error(epoch, fmt.Sprintf("the directory holds epoch %d; it was committed by another instance after this one opened", stored.Epoch))
	}

	c := checkpoint{Pipeline: s.pipeline, Epoch: epoch, Positions: until.Clone(), Time: s.now().UTC()}
	if s.out != nil {
		c.Records = s.out.records
		if err := s.out.sync(); err != nil {
			return fmt.Errorf("file sink: commit epoch %d: %w", epoch, err)
		}
	}
	if err := s.hit("staged-synced"); err != nil {
		return err
	}
	if s.dead != nil && s.dead.records > 0 {
		// Before the checkpoint: dead letters of an epoch that then fails to
		// commit are deleted by Open, and a replay renames over them.
		name, err := s.publishDead(epoch)
		if err != nil {
			return err
		}
		c.DeadLetters = name
		if err := s.hit("dead-letters-renamed"); err != nil {
			return err
		}
	} else if err := s.removeDead(epoch); err != nil {
		return err
	}
	var rolling bool
	if s.out != nil && s.out.size > 0 {
		rolling = s.roll.perEpoch() ||
			(s.roll.Bytes > 0 && s.out.size >= s.roll.Bytes) ||
			(s.roll.Interval > 0 && c.Time.Sub(s.out.since) >= s.roll.Interval)
		if rolling {
			c.Part = partName(s.pipeline, epoch, s.format)
			c.Staged = s.out.name
		} else {
			c.Open = &openPart{File: s.out.name, Bytes: s.out.size, Since: s.out.since}
		}
	}
	store, from := s.writeCheckpoint, s.checkpointPath(epoch)
	if s.useSlot(c) {
		store, from = s.writeSlot, s.slotPath(epoch)
	}
	c.from = from
	if err := store(c); err != nil {
		return err
	}
	if err := s.hit("checkpoint-stored"); err != nil {
		return err
	}
	if rolling {
		// The commit point.
		part := filepath.Join(s.dir, c.Part)
		if err := os.Rename(s.out.path(), part); err != nil {
			err = fmt.Errorf("file sink: commit epoch %d: %w", epoch, err)
			_, serr := os.Lstat(s.out.path())
			if _, perr := os.Lstat(part); perr == nil && errors.Is(serr, os.ErrNotExist) {
				// It happened all the same (a network file system's retry).
				return fmt.Errorf("%w: %w", engine.ErrNotCommitted, err)
			}
			return s.unstoreCheckpoint(c, err)
		}
		s.out.close()
		s.out = nil
		if err := s.hit("part-renamed"); err != nil {
			return err
		}
		if err := durable.SyncDir(s.dir); err != nil {
			return fmt.Errorf("%w: epoch %d: %w", engine.ErrNotCommitted, epoch, err)
		}
	} else if s.out != nil {
		s.out.committed = s.out.size
		s.out.records = 0
	}
	prev := s.known
	s.known = c
	s.staged.Epoch = 0
	s.prune(epoch, prev)
	return nil
}

func (s *Sink) hit(step string) error {
	if s.failpoint == nil {
		return nil
	}
	return s.failpoint(step)
}

// unstoreCheckpoint takes back the checkpoint of an epoch whose part
// rename failed, durably, before anything may drop its staging file: left
// in place, it would name a part file that never appeared and Open would
// count the epoch as committed without its output. If it cannot be taken
// back, the staging file is kept for Open to settle, and cause returned.
func (s *Sink) unstoreCheckpoint(c checkpoint, cause error) error {
	err := os.Remove(c.from)
	if err == nil {
		err = durable.SyncDir(s.meta)
	}
	if err != nil {
		s.log.Warn("cannot delete the checkpoint of an epoch that failed to commit; the next Open settles it", "file", c.from, "err", err)
		s.out.close()
		s.out = nil
	}
	return cause
}

// Abort discards what is staged for epoch (and, with rolling, only the bytes
// added since the last commit).
func (s *Sink) Abort(ctx context.Context, epoch uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropStaged()
	return nil
}

// Close discards anything staged, makes committed output that waits in an
// open part file visible (see seal) and releases the directory. If that
// fails, the output stays committed in its staging file and the next Open
// carries it on.
func (s *Sink) Close() error {
	s.stopIdleRoller()
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.lock != nil {
		s.dropStaged()
		err = s.seal()
	}
	s.reset()
	return err
}

// seal rolls the open part file without a new epoch: it rewrites the
// checkpoint of the last committed epoch so that it names the part file
// (Sealed), then renames the staging file to it. The rewritten checkpoint
// is the commit point of the roll. A crash before it leaves the output
// committed and open, carried on by the next Open as usual; a crash after
// it and before the rename is finished by the next Open (finishSeal).
// Positions do not move and no epoch is added, so the engine's view of
// what is committed does not change. Nothing may be staged.
//
// If another instance committed since this one last did, or opened and
// carried the open output into its own staging file, the output is that
// instance's to roll: the stored checkpoint is not the one this instance
// knows (or, once the other rolls, no longer names this file), and seal
// leaves it. Sealing in turn fences such an instance, as a commit would.
func (s *Sink) seal() error {
	if s.out == nil || s.out.committed == 0 || s.known.Open == nil {
		return nil
	}
	if err := flock.Lock(s.lock); err != nil {
		return fmt.Errorf("file sink: lock %s: %w", s.lock.Name(), err)
	}
	defer flock.Unlock(s.lock)
	// With cleanup: a commit of this instance that failed after storing a
	// rolling checkpoint (naming this staging file as the one to rename)
	// and before the rename must not outlive the seal, or the renamed file
	// would make it look committed ("moved away by a reader") and its epoch
	// would count without its output. writeCheckpoint's directory fsync
	// below makes the deletion durable before the rename.
	stored, err := s.newestCommitted(true)
	if err != nil {
		return err
	}
	if !stored.same(s.known) {
		s.log.Info("not rolling the open part file: another instance committed since; it carries the output on", "epoch", s.known.Epoch, "stored", stored.Epoch)
		return nil
	}
	// The committed length is durable since the last commit; this makes the
	// cut of anything staged after it durable too.
	if err := s.out.sync(); err != nil {
		return fmt.Errorf("file sink: roll on close: %w", err)
	}
	c := s.known
	c.Open = nil
	c.Part = partName(s.pipeline, c.Epoch, s.format)
	c.Staged = s.out.name
	c.Sealed = &openPart{File: s.out.name, Bytes: s.out.committed, Since: s.out.since}
	c.from = s.checkpointPath(c.Epoch)
	if err := s.writeCheckpoint(c); err != nil {
		return err
	}
	if err := s.hit("seal-checkpoint-stored"); err != nil {
		return err
	}
	prev := s.known
	s.known = c // from here on, Open finishes the roll if this one cannot
	if err := os.Rename(s.out.path(), filepath.Join(s.dir, c.Part)); err != nil {
		return fmt.Errorf("file sink: roll on close: %w; the next Open renames it", err)
	}
	s.out.close()
	s.out = nil
	if err := s.hit("seal-part-renamed"); err != nil {
		return err
	}
	if err := durable.SyncDir(s.dir); err != nil {
		return fmt.Errorf("file sink: roll on close: %w", err)
	}
	s.log.Debug("rolled the open part file", "part", c.Part, "bytes", c.Sealed.Bytes)
	s.prune(0, prev)
	return nil
}

// minIdleCheck keeps the idle roller from spinning when a part file is
// just about due.
const minIdleCheck = 10 * time.Millisecond

// startIdleRoller starts the idle roller if the roll has an age condition
// and it is not running yet (Open after a failure keeps it).
func (s *Sink) startIdleRoller() {
	if s.roll.perEpoch() || s.roll.Interval <= 0 || s.idleStop != nil {
		return
	}
	stop, done := make(chan struct{}), make(chan struct{})
	s.idleStop, s.idleDone = stop, done
	interval := s.roll.Interval
	go func() {
		defer close(done)
		t := time.NewTimer(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				t.Reset(max(s.rollWhenOld(), minIdleCheck))
			}
		}
	}()
}

// stopIdleRoller stops the idle roller and waits until it has, so it never
// runs after Close. The caller must not hold mu.
func (s *Sink) stopIdleRoller() {
	if s.idleStop == nil {
		return
	}
	close(s.idleStop)
	<-s.idleDone
	s.idleStop, s.idleDone = nil, nil
}

// rollWhenOld is the idle roller's step. Commits roll a part file once it
// is Interval old, but a source with nothing new makes no commits, so
// without this the output of its last epochs would stay hidden until more
// records come or the pipeline stops. It seals the part file if it is due
// and no epoch is staged (a staged epoch's commit checks the age itself),
// and returns how long to wait before looking again.
func (s *Sink) rollWhenOld() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil || s.staged.Epoch != 0 || s.out == nil || s.out.committed == 0 {
		return s.roll.Interval
	}
	if age := s.now().Sub(s.out.since); age < s.roll.Interval {
		return s.roll.Interval - age
	}
	if err := s.seal(); err != nil {
		s.log.Warn("cannot roll the part file of an idle pipeline; the next commit or Close tries again", "err", err)
	}
	return s.roll.Interval
}

// finishSeal completes a seal that stored its checkpoint but did not rename
// the staging file: it cuts the file to the committed length (bytes staged
// after it belong to no epoch) and renames it into place. The caller holds
// the commit lock.
func (s *Sink) finishSeal(c checkpoint) error {
	if c.Sealed == nil {
		return nil
	}
	if _, err := os.Lstat(filepath.Join(s.dir, c.Part)); err == nil {
		return nil
	}
	src := filepath.Join(s.meta, c.Sealed.File)
	f, err := os.OpenFile(src, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil // renamed, then moved away by a reader
	}
	if err != nil {
		return fmt.Errorf("file sink: finish rolling %s: %w", c.Part, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err == nil && fi.Size() < c.Sealed.Bytes {
		err = fmt.Errorf("it holds %d bytes, the checkpoint of epoch %d says %d; restore it, or delete %s to roll back to the epoch before (its output will be written again)",
			fi.Size(), c.Epoch, c.Sealed.Bytes, c.from)
	}
	if err == nil {
		err = f.Truncate(c.Sealed.Bytes)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(src, filepath.Join(s.dir, c.Part))
	}
	if err == nil {
		err = durable.SyncDir(s.dir)
	}
	if err != nil {
		return fmt.Errorf("file sink: finish rolling %s from %s: %w", c.Part, c.Sealed.File, err)
	}
	s.log.Info("finished rolling a part file that the last run stored but did not rename", "part", c.Part)
	return nil
}

// reset returns the sink to its state before Open.
func (s *Sink) reset() {
	s.dropStaged()
	if s.out != nil {
		s.out.close()
		s.out = nil
	}
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
	s.known = checkpoint{}
	s.tasks = nil
}

// dropStaged discards the staged epoch: dead letters entirely, output back
// to its committed length.
func (s *Sink) dropStaged() {
	s.staged.Epoch = 0
	if s.dead != nil {
		s.dead.remove()
		s.dead = nil
	}
	if s.out == nil {
		return
	}
	if s.out.committed == 0 {
		s.dropOut()
		return
	}
	if err := s.out.truncate(); err != nil {
		s.log.Warn("cannot cut the staging file back to its committed length; starting a new one", "file", s.out.path(), "err", err)
		s.out.close() // it stays referenced by the checkpoint; carry copies the committed part
		s.out = nil
		if err := s.carry(); err != nil {
			s.log.Warn("cannot carry committed output into a new staging file", "err", err)
		}
	}
}

// dropOut deletes this instance's output staging file unless a checkpoint
// still refers to it.
func (s *Sink) dropOut() {
	if s.out == nil {
		return
	}
	if s.known.Open != nil && s.known.Open.File == s.out.name {
		s.out.close()
	} else {
		s.out.remove()
	}
	s.out = nil
}

// stageOut returns the output staging file, creating it on first use.
func (s *Sink) stageOut() (*stage, error) {
	if s.out != nil {
		return s.out, nil
	}
	st, err := s.newStage(s.stageDir(), "")
	if err != nil {
		return nil, err
	}
	st.since = s.now().UTC()
	s.out = st
	return st, nil
}

// carry makes committed but unrolled output (a rolling part file in
// progress) this instance's own by copying its committed bytes into a new
// staging file. Copying rather than adopting the file keeps a stale instance
// that still appends to it from corrupting what this one commits.
func (s *Sink) carry() error {
	o := s.known.Open
	if o == nil || (s.out != nil && s.out.name == o.File) {
		return nil
	}
	src, err := os.Open(filepath.Join(s.meta, o.File))
	if err != nil {
		return fmt.Errorf("file sink: epoch %d left committed output in %s, which cannot be read: %w; restore it, or delete %s to roll back to the epoch before (its output will be written again)",
			s.known.Epoch, o.File, err, s.known.from)
	}
	defer src.Close()
	st, err := s.newStage(s.meta, "")
	if err != nil {
		return err
	}
	n, err := io.Copy(st.w, io.LimitReader(src, o.Bytes))
	if err == nil && n != o.Bytes {
		err = fmt.Errorf("it holds %d bytes, the checkpoint of epoch %d says %d", n, s.known.Epoch, o.Bytes)
	}
	if err == nil {
		err = st.sync()
	}
	if err != nil {
		st.remove()
		return fmt.Errorf("file sink: carry committed output from %s: %w", o.File, err)
	}
	st.size, st.committed, st.since = n, n, o.Since
	s.out = st
	return nil
}

// newStage creates a staging file in dir (the pipeline's meta directory,
// or its tasks directory) and locks it: the lock is held while the file is
// in use so that another instance's recovery can tell a live staging file
// from one a crashed instance left behind, and deletes only those it can
// lock. One it deleted between the creation and the lock is made again
// under the next name.
func (s *Sink) newStage(dir, suffix string) (*stage, error) {
	for {
		s.seq++
		name := fmt.Sprintf("%s%s-%d%s", stagePref, s.id, s.seq, suffix)
		path := filepath.Join(dir, name)
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, fmt.Errorf("file sink: create staging file: %w", err)
		}
		err = flock.Lock(f)
		if err == nil {
			var fi, pi os.FileInfo
			if fi, err = f.Stat(); err == nil {
				pi, err = os.Lstat(path)
				if errors.Is(err, os.ErrNotExist) || err == nil && !os.SameFile(fi, pi) {
					f.Close()
					continue
				}
			}
		}
		if err != nil {
			f.Close()
			os.Remove(path)
			return nil, fmt.Errorf("file sink: lock staging file: %w", err)
		}
		return &stage{f: f, dir: dir, name: name, w: bufio.NewWriterSize(f, writeBuffer)}, nil
	}
}

// stageDir is where staging files go: next to the checkpoints they are
// named in, so one directory fsync makes both durable.
func (s *Sink) stageDir() string {
	if s.tasks != nil {
		return s.tasks.dir
	}
	return s.meta
}

// publishDead fsyncs the staged dead letters and renames them to their
// committed name for epoch.
func (s *Sink) publishDead(epoch uint64) (string, error) {
	return s.publishDeadAs(epoch, deadName(epoch))
}

// publishDeadAs is publishDead under the given file name; it returns the
// file's path.
func (s *Sink) publishDeadAs(epoch uint64, name string) (string, error) {
	dir := filepath.Join(s.deadRoot, s.pipeline)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("file sink: create %s: %w", dir, err)
	}
	if err := s.dead.sync(); err != nil {
		return "", fmt.Errorf("file sink: dead letters of epoch %d: %w", epoch, err)
	}
	if err := os.Rename(s.dead.path(), filepath.Join(dir, name)); err != nil {
		if errors.Is(err, syscall.EXDEV) {
			return "", fmt.Errorf("file sink: dead letters of epoch %d: %s is on another file system than %s, so they cannot commit atomically with the output; put the dead-letter folder on the same file system", epoch, s.deadRoot, s.dir)
		}
		return "", fmt.Errorf("file sink: dead letters of epoch %d: %w", epoch, err)
	}
	s.dead.close()
	s.dead = nil
	if err := durable.SyncDir(dir); err != nil {
		return "", fmt.Errorf("file sink: %w", err)
	}
	return filepath.Join(dir, name), nil
}

// removeDead deletes a dead-letter file of epoch that an earlier attempt
// at committing it renamed into place before failing: epoch is not
// committed (the caller checked), and this attempt has no dead letters.
func (s *Sink) removeDead(epoch uint64) error {
	err := os.Remove(filepath.Join(s.deadRoot, s.pipeline, deadName(epoch)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("file sink: remove dead letters of an earlier attempt at epoch %d: %w", epoch, err)
	}
	return nil
}

// prune deletes checkpoints older than the last keepCheckpoints and a
// carried-from staging file no checkpoint needs any more. Failures only
// leave garbage behind, so they are logged, not returned.
// epoch 0 prunes no checkpoint.
func (s *Sink) prune(epoch uint64, prev checkpoint) {
	if prev.Open != nil && (s.known.Open == nil || s.known.Open.File != prev.Open.File) &&
		(s.out == nil || s.out.name != prev.Open.File) {
		removeIfDead(filepath.Join(s.meta, prev.Open.File))
	}
	if epoch <= keepCheckpoints {
		return
	}
	old := epoch - keepCheckpoints
	if err := os.Remove(s.checkpointPath(old)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("cannot delete an old checkpoint", "err", err)
	}
}

// checkPipelineName rejects names that cannot be part of a file name.
func checkPipelineName(p string) error {
	if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "/\\\x00") {
		return fmt.Errorf("file sink: pipeline name %q cannot name files; use letters, digits, '-', '_' and '.'", p)
	}
	return nil
}

func partName(pipeline string, epoch uint64, f recordfmt.Format) string {
	return fmt.Sprintf("part-%s-%020d%s", pipeline, epoch, f.Ext())
}

func deadName(epoch uint64) string { return fmt.Sprintf("dead-%020d.jsonl", epoch) }

// removeIfDead deletes a staging file unless a live instance holds its lock.
func removeIfDead(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if ok, _ := flock.TryLock(f); !ok {
		return false
	}
	return os.Remove(path) == nil
}

// stage is one hidden staging file and its write buffer.
type stage struct {
	f         *os.File
	dir, name string
	w         *bufio.Writer
	size      int64     // bytes written, buffered ones included
	committed int64     // bytes that belong to committed epochs (rolling)
	records   int64     // records of the staged epoch
	since     time.Time // when its first epoch was staged (roll interval)
}

func (st *stage) path() string { return filepath.Join(st.dir, st.name) }

func (st *stage) append(f recordfmt.Format, r *engine.Record) error {
	b := f.Append(st.w.AvailableBuffer(), r)
	n, err := st.w.Write(b)
	st.size += int64(n)
	st.records++
	return err
}

// sync writes out the buffer and fsyncs: the one fsync of output per commit.
func (st *stage) sync() error {
	if err := st.w.Flush(); err != nil {
		return err
	}
	return st.f.Sync()
}

// truncate cuts the file back to its committed bytes.
func (st *stage) truncate() error {
	st.w.Reset(st.f)
	if err := st.f.Truncate(st.committed); err != nil {
		return err
	}
	if _, err := st.f.Seek(st.committed, io.SeekStart); err != nil {
		return err
	}
	st.size, st.records = st.committed, 0
	return nil
}

func (st *stage) close() { st.f.Close() }

func (st *stage) remove() {
	os.Remove(st.path())
	st.f.Close()
}

// CommittedDeadLetters reads back the dead-letter file of the lowest
// committed epoch above after. It implements sinks.Outbox.
func (s *Sink) CommittedDeadLetters(ctx context.Context, after uint64) (uint64, []engine.Record, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tasks != nil {
		return 0, nil, errTaskOutbox
	}
	epochs, err := s.deadEpochs()
	if err != nil {
		return 0, nil, err
	}
	for _, ep := range epochs {
		// A file above the committed epoch belongs to a commit in progress
		// or one that failed (Open deletes those).
		if ep <= after || ep > s.known.Epoch {
			continue
		}
		path := filepath.Join(s.deadRoot, s.pipeline, deadName(ep))
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, nil, fmt.Errorf("file sink: read dead letters: %w", err)
		}
		var out []engine.Record
		for n, line := range bytes.Split(b, []byte{'\n'}) {
			if len(line) == 0 {
				continue
			}
			r, err := recordfmt.ParseJSON(line)
			if err != nil {
				return 0, nil, fmt.Errorf("file sink: dead letters %s line %d: %w; the file was changed from outside, restore or delete it", path, n+1, err)
			}
			out = append(out, r)
		}
		return ep, out, nil
	}
	return 0, nil, nil
}

// ForgetDeadLetters deletes the dead-letter files of committed epochs up
// to through. It implements sinks.Outbox.
func (s *Sink) ForgetDeadLetters(ctx context.Context, through uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tasks != nil {
		return errTaskOutbox
	}
	epochs, err := s.deadEpochs()
	if err != nil || len(epochs) == 0 {
		return err
	}
	dir := filepath.Join(s.deadRoot, s.pipeline)
	for _, ep := range epochs {
		if ep > through || ep > s.known.Epoch {
			break
		}
		if err := os.Remove(filepath.Join(dir, deadName(ep))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("file sink: delete forwarded dead letters: %w", err)
		}
	}
	return durable.SyncDir(dir)
}

// deadEpochs lists the epochs that have a dead-letter file, in order.
func (s *Sink) deadEpochs() ([]uint64, error) {
	if s.lock == nil {
		return nil, errors.New("file sink: dead letters read before Open")
	}
	files, err := os.ReadDir(filepath.Join(s.deadRoot, s.pipeline))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("file sink: %w", err)
	}
	var epochs []uint64
	for _, f := range files {
		n, ok := strings.CutPrefix(f.Name(), "dead-")
		if n, ok = strings.CutSuffix(n, ".jsonl"); !ok {
			continue
		}
		if ep, err := strconv.ParseUint(n, 10, 64); err == nil {
			epochs = append(epochs, ep)
		}
	}
	slices.Sort(epochs)
	return epochs, nil
}
