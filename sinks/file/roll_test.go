package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipelines"
)

func newRolling(t *testing.T, dir string, roll *RollConfig) *Sink {
	t.Helper()
	s, err := New(Config{Path: dir, Format: "raw", Roll: roll}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// reopenAtEpoch2 opens a new sink on dir and checks that it resumes after
// epoch 2: epoch 3 never committed.
func reopenAtEpoch2(t *testing.T, dir string) *Sink {
	t.Helper()
	s := newRolling(t, dir, nil)
	if e, p := open(t, s, "p"); e != 2 || !p.Equal(pos(2)) {
		t.Fatalf("reopen = %d, %v; want 2, %v (epoch 3 never committed)", e, p, pos(2))
	}
	return s
}

// replayEpoch3 writes and commits epoch 3 again on s, closes it and checks
// that e1, e2 and e3 are each visible once.
func replayEpoch3(t *testing.T, s *Sink, dir string) {
	t.Helper()
	s.Write(context.Background(), 3, recs("e3"))
	if err := s.Commit(context.Background(), 3, pos(3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := visibleValues(t, dir); !slices.Equal(got, []string{"e1", "e2", "e3"}) {
		t.Fatalf("visible = %q, want e1 e2 e3", got)
	}
}

func visibleValues(t *testing.T, dir string) []string {
	t.Helper()
	return visibleValuesOf(t, dir, "raw")
}

// committedValues returns what every pipeline under dir has committed: the
// visible part files, then for each pipeline the committed bytes of its
// open part file (or of a rolled one whose rename Open has still to
// finish), as the newest committed checkpoint names them.
func committedValues(t *testing.T, dir, format string) []string {
	t.Helper()
	out := visibleValuesOf(t, dir, format)
	metas, err := os.ReadDir(filepath.Join(dir, metaDir))
	if errors.Is(err, os.ErrNotExist) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range metas {
		r := &Sink{dir: dir, pipeline: m.Name(), meta: filepath.Join(dir, metaDir, m.Name()), log: slog.New(slog.DiscardHandler)}
		c, err := r.newestCommitted(false)
		if err != nil {
			t.Fatal(err)
		}
		part := c.Open
		if c.Sealed != nil {
			if _, err := os.Stat(filepath.Join(dir, c.Part)); err == nil {
				continue // rolled: read above
			}
			part = c.Sealed
		}
		if part == nil {
			continue
		}
		f, err := os.Open(filepath.Join(r.meta, part.File))
		if err != nil {
			t.Fatalf("the checkpoint of epoch %d names %s: %v", c.Epoch, part.File, err)
		}
		out = append(out, parseValues(t, part.File, io.LimitReader(f, part.Bytes), format)...)
		f.Close()
	}
	return out
}

// steps counts Commit's and seal's steps; set it as the failpoint.
type steps map[string]int

func (c steps) hit(step string) error { c[step]++; return nil }

// Each epoch below writes two 3-byte lines ("eN" + "\n" twice = 6 bytes
// for one-digit N); with bytes: 15 the third epoch reaches the size.
func TestRollBySize(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newRolling(t, dir, &RollConfig{Bytes: 15})
	open(t, s, "p")
	var want []string
	for e := uint64(1); e <= 4; e++ {
		v := []string{fmt.Sprintf("a%d", e), fmt.Sprintf("b%d", e)}
		want = append(want, v...)
		if err := s.Write(ctx, e, recs(v...)); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, e, pos(int64(e))); err != nil {
			t.Fatal(err)
		}
		files := visible(t, dir)
		switch {
		case e < 3 && len(files) != 0:
			t.Fatalf("epoch %d: %v visible before the roll size", e, files)
		case e == 3 && !slices.Equal(files, []string{"part-p-00000000000000000003.txt"}):
			t.Fatalf("epoch 3: visible %v, want one part file named by its last epoch", files)
		}
	}
	if got := visibleValues(t, dir); !slices.Equal(got, want[:6]) {
		t.Fatalf("visible = %q, want %q", got, want[:6])
	}
	// Epoch 4 is committed but waits in the next part file; a crash keeps
	// it there (Close would roll it).
	crash(s)
	s2 := newRolling(t, dir, &RollConfig{Bytes: 15})
	if e, p := open(t, s2, "p"); e != 4 || !p.Equal(pos(4)) {
		t.Fatalf("reopen = %d, %v; want 4, %v", e, p, pos(4))
	}
	if got := visibleValues(t, dir); !slices.Equal(got, want[:6]) {
		t.Fatalf("visible after a crash = %q, want %q", got, want[:6])
	}
	// A zero-record epoch over the size limit of carried output rolls it.
	s2.roll.Bytes = 1
	if err := s2.Commit(ctx, 5, pos(5)); err != nil {
		t.Fatal(err)
	}
	if got := visibleValues(t, dir); !slices.Equal(got, want) {
		t.Fatalf("visible = %q, want %q", got, want)
	}
}

func TestRollByInterval(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newRolling(t, dir, &RollConfig{Interval: pipelines.Duration(time.Minute)})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	open(t, s, "p")
	for e := uint64(1); e <= 3; e++ {
		s.Write(ctx, e, recs(fmt.Sprint(e)))
		if err := s.Commit(ctx, e, pos(int64(e))); err != nil {
			t.Fatal(err)
		}
		now = now.Add(25 * time.Second) // epoch 3 commits 50s after epoch 1 was staged
	}
	if files := visible(t, dir); len(files) != 0 {
		t.Fatalf("visible before the interval: %v", files)
	}
	s.Write(ctx, 4, recs("4"))
	if err := s.Commit(ctx, 4, pos(4)); err != nil { // 75s
		t.Fatal(err)
	}
	if got := visibleValues(t, dir); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		t.Fatalf("visible = %q", got)
	}
}

// Continuous mode commits an epoch every few milliseconds. With the
// default roll, 1,000 small epochs within a minute and far below 128 MiB
// are one part file, visible when the sink closes; each of them after the
// first stored its checkpoint in a slot (one fsync) instead of a
// checkpoint file (two, and a rename).
func TestContinuousEpochsShareOnePartFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newRolling(t, dir, nil)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	open(t, s, "p")
	count := steps{}
	s.failpoint = count.hit
	const epochs, perEpoch = 1000, 20
	var want []string
	for e := 1; e <= epochs; e++ {
		v := make([]string, perEpoch)
		for i := range v {
			v[i] = strconv.Itoa(e*perEpoch + i)
		}
		want = append(want, v...)
		if err := s.Write(ctx, uint64(e), recs(v...)); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, uint64(e), pos(int64(e))); err != nil {
			t.Fatal(err)
		}
		now = now.Add(5 * time.Millisecond)
	}
	if files := visible(t, dir); len(files) != 0 {
		t.Fatalf("%d part files before the roll: %v", len(files), files[:min(len(files), 3)])
	}
	if got := committedValues(t, dir, "raw"); !slices.Equal(got, want) {
		t.Fatalf("committed output differs: %d values, want %d", len(got), len(want))
	}
	if count["staged-synced"] != epochs || count["slot-written"] != epochs-1 || count["checkpoint-tmp-synced"] != 1 {
		t.Fatalf("%d epochs: %d part file fsyncs, %d slot writes, %d checkpoint files; want %d, %d, 1 (the first epoch's, which made the staging file)",
			epochs, count["staged-synced"], count["slot-written"], count["checkpoint-tmp-synced"], epochs, epochs-1)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	want1 := []string{partName("p", epochs, s.format)}
	if files := visible(t, dir); !slices.Equal(files, want1) {
		t.Fatalf("after Close: %v, want %v", files, want1)
	}
	if got := visibleValues(t, dir); !slices.Equal(got, want) {
		t.Fatalf("visible output differs: %d values, want %d", len(got), len(want))
	}
	s2 := newRolling(t, dir, nil)
	if e, p := open(t, s2, "p"); e != epochs || !p.Equal(pos(epochs)) {
		t.Fatalf("reopen = %d, %v; want %d, %v", e, p, epochs, pos(epochs))
	}
	assertNoLeftovers(t, dir)
}

// With the default roll and epochs 100ms apart for 100s, the part file
// rolls at its first commit a minute after it began, and Close rolls the
// rest.
func TestDefaultRollByAge(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newRolling(t, dir, nil)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	open(t, s, "p")
	const epochs = 1000
	var want []string
	for e := uint64(1); e <= epochs; e++ {
		v := strconv.FormatUint(e, 10)
		want = append(want, v)
		s.Write(ctx, e, recs(v))
		if err := s.Commit(ctx, e, pos(int64(e))); err != nil {
			t.Fatal(err)
		}
		now = now.Add(100 * time.Millisecond)
	}
	// Epoch 1 was staged at 0s; epoch 601 commits at 60.0s.
	if files := visible(t, dir); !slices.Equal(files, []string{partName("p", 601, s.format)}) {
		t.Fatalf("visible = %v, want the part file rolled at epoch 601", files)
	}
	s.Close()
	if files := visible(t, dir); len(files) != 2 {
		t.Fatalf("after Close: %v, want 2 part files", files)
	}
	if got := visibleValues(t, dir); !slices.Equal(got, want) {
		t.Fatalf("visible output differs: %d values, want %d", len(got), len(want))
	}
}

// A source with nothing new makes no commits; the idle roller makes the
// last epochs' output visible once the part file is Interval old, unless
// an epoch is staged (its commit checks the age itself).
func TestIdlePartFileRollsWhenOld(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newRolling(t, dir, nil)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	s.now = func() time.Time { return now }
	open(t, s, "p")
	s.Write(ctx, 1, recs("1"))
	if err := s.Commit(ctx, 1, pos(1)); err != nil {
		t.Fatal(err)
	}
	now = start.Add(40 * time.Second)
	if wait := s.rollWhenOld(); wait != 20*time.Second || len(visible(t, dir)) != 0 {
		t.Fatalf("at 40s: next look in %s, visible %v; want 20s and nothing", wait, visible(t, dir))
	}
	s.Write(ctx, 2, recs("2")) // staged: the roller leaves the file to its commit
	now = start.Add(70 * time.Second)
	if s.rollWhenOld(); len(visible(t, dir)) != 0 {
		t.Fatalf("rolled while epoch 2 was staged: %v", visible(t, dir))
	}
	s.Abort(ctx, 2)
	if wait := s.rollWhenOld(); wait != DefaultRollInterval {
		t.Fatalf("next look in %s after a roll, want %s", wait, DefaultRollInterval)
	}
	if got := visibleValues(t, dir); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("visible = %q, want the idle part file rolled", got)
	}
	// The roll added no epoch: the engine goes on with epoch 2.
	s.Write(ctx, 2, recs("2"))
	if err := s.Commit(ctx, 2, pos(2)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := visibleValues(t, dir); !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("visible = %q, want 1 2", got)
	}
	if e, p := open(t, newRolling(t, dir, nil), "p"); e != 2 || !p.Equal(pos(2)) {
		t.Fatalf("reopen = %d, %v; want 2, %v", e, p, pos(2))
	}
}

// The idle roller runs on its own: with a short interval, committed output
// appears without another commit or Close.
func TestIdleRollerRunsByItself(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newRolling(t, dir, &RollConfig{Interval: pipelines.Duration(20 * time.Millisecond)})
	// The commit sees a young part file whatever the machine's speed; the
	// roller, which runs on its own timer, then sees it an hour old.
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var late atomic.Bool
	s.now = func() time.Time {
		if late.Load() {
			return start.Add(time.Hour)
		}
		return start
	}
	open(t, s, "p")
	s.Write(ctx, 1, recs("idle"))
	if err := s.Commit(ctx, 1, pos(1)); err != nil {
		t.Fatal(err)
	}
	if files := visible(t, dir); len(files) != 0 {
		t.Fatalf("rolled at the commit: %v", files)
	}
	late.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for len(visible(t, dir)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the idle part file did not roll within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := visibleValues(t, dir); !slices.Equal(got, []string{"idle"}) {
		t.Fatalf("visible = %q", got)
	}
	s.Close()
	if s.idleStop != nil {
		t.Fatal("the idle roller still runs after Close")
	}
}

func TestPerEpochOption(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newRolling(t, dir, &RollConfig{PerEpoch: true})
	open(t, s, "p")
	if s.idleStop != nil {
		t.Fatal("an idle roller runs with per-epoch part files")
	}
	for e := uint64(1); e <= 3; e++ {
		if e != 2 { // epoch 2 has no output and makes no file
			s.Write(ctx, e, recs(fmt.Sprint(e)))
		}
		if err := s.Commit(ctx, e, pos(int64(e))); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{partName("p", 1, s.format), partName("p", 3, s.format)}
	if files := visible(t, dir); !slices.Equal(files, want) {
		t.Fatalf("visible = %v, want %v", files, want)
	}
}

// Close rolls the open part file; the next run starts a new one.
func TestCloseRollsOpenPart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newRolling(t, dir, nil)
	open(t, s, "p")
	for e := uint64(1); e <= 3; e++ {
		s.Write(ctx, e, recs(fmt.Sprint(e)))
		if err := s.Commit(ctx, e, pos(int64(e))); err != nil {
			t.Fatal(err)
		}
	}
	s.Write(ctx, 4, recs("staged, never committed"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if files := visible(t, dir); !slices.Equal(files, []string{partName("p", 3, s.format)}) {
		t.Fatalf("after Close: %v, want the part file named by epoch 3", files)
	}
	s2 := newRolling(t, dir, nil)
	if e, p := open(t, s2, "p"); e != 3 || !p.Equal(pos(3)) {
		t.Fatalf("reopen = %d, %v; want 3, %v", e, p, pos(3))
	}
	s2.Write(ctx, 4, recs("4"))
	if err := s2.Commit(ctx, 4, pos(4)); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if got := visibleValues(t, dir); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		t.Fatalf("visible = %q, want 1 2 3 4", got)
	}
	assertNoLeftovers(t, dir)
}

// A crash while a rolling part file is in progress: the next instance
// carries the committed epochs over, drops the uncommitted one, and the
// rolled file holds every committed record once.
func TestRollCrashCarriesCommittedOutput(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	roll := &RollConfig{Bytes: 1 << 20}
	s := newRolling(t, dir, roll)
	open(t, s, "p")
	for e := uint64(1); e <= 2; e++ {
		s.Write(ctx, e, recs(fmt.Sprint(e)))
		if err := s.Commit(ctx, e, pos(int64(e))); err != nil {
			t.Fatal(err)
		}
	}
	s.Write(ctx, 3, recs("lost"))
	s.out.sync() // the uncommitted bytes reached the disk before the crash
	crash(s)

	s2 := newRolling(t, dir, roll)
	if e, _ := open(t, s2, "p"); e != 2 {
		t.Fatalf("reopen = epoch %d, want 2", e)
	}
	s2.Write(ctx, 3, recs("3"))
	if err := s2.Abort(ctx, 3); err != nil {
		t.Fatal(err)
	}
	s2.Write(ctx, 3, recs("3"))
	s2.roll.Bytes = 1
	if err := s2.Commit(ctx, 3, pos(3)); err != nil {
		t.Fatal(err)
	}
	if got := visibleValues(t, dir); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("visible = %q, want 1 2 3", got)
	}
	assertNoLeftovers(t, dir)
}

// TestCrashInRolledFile stops the commit of an epoch appended to an open
// part file after each of its steps, restarts, replays if the epoch did
// not commit, and closes: the output then holds every record once.
func TestCrashInRolledFile(t *testing.T) {
	steps := []string{"staged-synced", "dead-letters-renamed", "slot-written", "checkpoint-stored"}
	scenarios := []struct {
		name      string
		out, dead []string
	}{
		{"output and dead letters", []string{"o1", "o2"}, []string{"d1"}},
		{"output only", []string{"o1"}, nil},
		{"dead letters only", nil, []string{"d1"}},
		{"nothing", nil, nil},
	}
	for _, sc := range scenarios {
		for _, step := range steps {
			t.Run(sc.name+"/"+step, func(t *testing.T) {
				ctx := context.Background()
				dir := t.TempDir()
				s := newRolling(t, dir, nil)
				open(t, s, "p")
				for e := uint64(1); e <= 2; e++ {
					s.Write(ctx, e, recs(fmt.Sprintf("e%d", e)))
					if err := s.Commit(ctx, e, pos(int64(e))); err != nil {
						t.Fatal(err)
					}
				}
				reached := false
				s.failpoint = func(at string) error {
					if at == step {
						reached = true
						return errCrash
					}
					return nil
				}
				stage := func(s *Sink) {
					if err := s.Write(ctx, 3, recs(sc.out...)); err != nil {
						t.Fatal(err)
					}
					if err := s.WriteRejected(ctx, 3, rejects(sc.dead...)); err != nil {
						t.Fatal(err)
					}
				}
				stage(s)
				if err := s.Commit(ctx, 3, pos(3)); reached != (err != nil) {
					t.Fatalf("Commit = %v (failpoint reached: %v)", err, reached)
				}
				crash(s)

				committed := !reached || slices.Index(steps, step) >= slices.Index(steps, "slot-written")
				s2 := newRolling(t, dir, nil)
				want := uint64(2)
				if committed {
					want = 3
				}
				if epoch, at := open(t, s2, "p"); epoch != want || !at.Equal(pos(int64(want))) {
					t.Fatalf("after a crash at %s: Open = %d, %v; want %d, %v", step, epoch, at, want, pos(int64(want)))
				}
				if len(visible(t, dir)) != 0 {
					t.Fatalf("output visible before any roll: %v", visible(t, dir))
				}
				if !committed {
					stage(s2)
					if err := s2.Commit(ctx, 3, pos(3)); err != nil {
						t.Fatal(err)
					}
				}
				wantOut := append([]string{"e1", "e2"}, sc.out...)
				if got := committedValues(t, dir, "raw"); !slices.Equal(got, wantOut) {
					t.Fatalf("committed output = %q, want %q", got, wantOut)
				}
				if err := s2.Close(); err != nil {
					t.Fatal(err)
				}
				if got := visibleValues(t, dir); !slices.Equal(got, wantOut) {
					t.Errorf("visible output after Close = %q, want %q", got, wantOut)
				}
				var dead []string
				files, _ := filepath.Glob(filepath.Join(dir, deadDir, "p", "*"))
				for _, f := range files {
					dead = append(dead, readValues(t, f, "jsonl")...)
				}
				if !slices.Equal(dead, sc.dead) {
					t.Errorf("dead letters = %q, want %q", dead, sc.dead)
				}
				assertNoLeftovers(t, dir)
			})
		}
	}
}

// TestCrashWhileClosing stops the roll on Close after each of its steps:
// the output stays committed, in its staging file before the rewritten
// checkpoint is stored and in the part file after (Open finishes the
// rename), and is never doubled.
func TestCrashWhileClosing(t *testing.T) {
	for _, step := range []string{"checkpoint-tmp-synced", "seal-checkpoint-stored", "seal-part-renamed"} {
		t.Run(step, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := newRolling(t, dir, nil)
			open(t, s, "p")
			for e := uint64(1); e <= 2; e++ {
				s.Write(ctx, e, recs(fmt.Sprintf("e%d", e)))
				if err := s.Commit(ctx, e, pos(int64(e))); err != nil {
					t.Fatal(err)
				}
			}
			s.Write(ctx, 3, recs("staged, never committed"))
			s.out.sync() // Close must cut these bytes off wherever it stops
			staging := s.out.path()
			s.failpoint = func(at string) error {
				if at == step {
					return errCrash
				}
				return nil
			}
			if err := s.Close(); !errors.Is(err, errCrash) {
				t.Fatalf("Close = %v, want the injected crash", err)
			}
			if step == "seal-checkpoint-stored" {
				// What a crash of the process could leave: the cut not
				// durable. Open cuts the file to the checkpoint's length.
				f, err := os.OpenFile(staging, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.WriteString("uncommitted\n")
				f.Close()
			}
			rolled := step != "checkpoint-tmp-synced"

			s2 := reopenAtEpoch2(t, dir)
			if files := visible(t, dir); rolled != (len(files) == 1) {
				t.Fatalf("visible after reopening = %v; rolled before the crash: %v", files, rolled)
			}
			if got := committedValues(t, dir, "raw"); !slices.Equal(got, []string{"e1", "e2"}) {
				t.Fatalf("committed output = %q, want e1 e2", got)
			}
			replayEpoch3(t, s2, dir)
			assertNoLeftovers(t, dir)
		})
	}
}

// A rolling commit that stored its checkpoint and failed before the
// rename, aborted, then rolled by Close instead: the failed epoch stays
// uncommitted (its checkpoint names the staging file Close renamed, which
// must not pass for a part file a reader moved away).
func TestFailedRollThenClose(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newRolling(t, dir, nil)
	open(t, s, "p")
	for e := uint64(1); e <= 2; e++ {
		s.Write(ctx, e, recs(fmt.Sprintf("e%d", e)))
		if err := s.Commit(ctx, e, pos(int64(e))); err != nil {
			t.Fatal(err)
		}
	}
	s.Write(ctx, 3, recs("e3"))
	s.roll.Bytes = 1 // epoch 3 rolls
	s.failpoint = func(at string) error {
		if at == "checkpoint-stored" {
			return errCrash
		}
		return nil
	}
	if err := s.Commit(ctx, 3, pos(3)); !errors.Is(err, errCrash) {
		t.Fatalf("Commit = %v, want the injected failure", err)
	}
	s.failpoint = nil
	s.Abort(ctx, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	replayEpoch3(t, reopenAtEpoch2(t, dir), dir)
}

// A slot whose write tore (a power loss before its fsync) holds no
// epoch: Open finds the one before in the other slot, and the replay
// writes the lost epoch once.
func TestTornSlot(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newRolling(t, dir, nil)
	open(t, s, "p")
	for e := uint64(1); e <= 3; e++ { // epoch 1: checkpoint file; 2, 3: slots
		s.Write(ctx, e, recs(fmt.Sprintf("e%d", e)))
		if err := s.Commit(ctx, e, pos(int64(e))); err != nil {
			t.Fatal(err)
		}
	}
	slot := s.slotPath(3)
	crash(s)
	b, err := os.ReadFile(slot)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(slot, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	replayEpoch3(t, reopenAtEpoch2(t, dir), dir)
}

// Rolling on Close is a write like a commit: it happens only if this
// instance knows the stored state, and it fences an instance that carried
// the open output before it.
func TestCloseRollAndOtherInstances(t *testing.T) {
	ctx := context.Background()
	t.Run("a later instance committed", func(t *testing.T) {
		dir := t.TempDir()
		a := newRolling(t, dir, nil)
		open(t, a, "p")
		a.Write(ctx, 1, recs("a1"))
		if err := a.Commit(ctx, 1, pos(1)); err != nil {
			t.Fatal(err)
		}
		b := newRolling(t, dir, nil)
		open(t, b, "p")
		b.Write(ctx, 2, recs("b2"))
		if err := b.Commit(ctx, 2, pos(2)); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if files := visible(t, dir); len(files) != 0 {
			t.Fatalf("the stale instance rolled on Close: %v", files)
		}
		b.Close()
		if got := visibleValues(t, dir); !slices.Equal(got, []string{"a1", "b2"}) {
			t.Fatalf("visible = %q, want a1 b2", got)
		}
	})
	t.Run("an earlier instance rolls", func(t *testing.T) {
		dir := t.TempDir()
		a := newRolling(t, dir, nil)
		open(t, a, "p")
		a.Write(ctx, 1, recs("a1"))
		if err := a.Commit(ctx, 1, pos(1)); err != nil {
			t.Fatal(err)
		}
		b := newRolling(t, dir, nil) // carries a1 into its own staging file
		open(t, b, "p")
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		b.Write(ctx, 2, recs("b2"))
		if err := b.Commit(ctx, 2, pos(2)); err == nil || !strings.Contains(err.Error(), "fenced") {
			t.Fatalf("Commit after another instance rolled the output it carried = %v; want fenced", err)
		}
		b.Close()
		if got := visibleValues(t, dir); !slices.Equal(got, []string{"a1"}) {
			t.Fatalf("visible = %q, want a1 once", got)
		}
		// b's copy of a1 is garbage that the next Open deletes.
		open(t, newRolling(t, dir, nil), "p")
		assertNoLeftovers(t, dir)
	})
}

func TestRollConfig(t *testing.T) {
	for _, tc := range []struct {
		roll *RollConfig
		want Roll
		err  string
	}{
		{nil, DefaultRoll, ""},
		{&RollConfig{PerEpoch: true, Bytes: 5}, Roll{PerEpoch: true}, ""},
		{&RollConfig{Bytes: 5}, Roll{Bytes: 5}, ""},
		{&RollConfig{}, Roll{}, "neither bytes nor interval"},
		{&RollConfig{Bytes: -1}, Roll{}, "cannot be negative"},
	} {
		s, err := New(Config{Path: t.TempDir(), Roll: tc.roll}, nil, "")
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("New(roll %+v) = %v, want an error saying %q", tc.roll, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("New(roll %+v) = %v", tc.roll, err)
		case tc.err == "" && s.roll != tc.want:
			t.Errorf("New(roll %+v).roll = %+v, want %+v", tc.roll, s.roll, tc.want)
		}
	}
	if DefaultRoll.Bytes != 128<<20 || DefaultRoll.Interval != time.Minute {
		t.Errorf("DefaultRoll = %+v, want 128 MiB or 1m", DefaultRoll)
	}
}
