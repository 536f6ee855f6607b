package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/engine"
)

var errCrash = errors.New("injected crash")

// crash drops s the way a killed process would: its idle roller stops,
// its files are closed (the kernel releases their locks) and nothing is
// cleaned up.
func crash(s *Sink) {
	s.stopIdleRoller()
	for _, st := range []*stage{s.out, s.dead} {
		if st != nil {
			st.f.Close()
		}
	}
	if s.lock != nil {
		s.lock.Close()
	}
	*s = Sink{}
}

func rejects(vals ...string) []engine.Rejected {
	out := make([]engine.Rejected, len(vals))
	for i, v := range vals {
		out[i] = engine.Rejected{Record: engine.Record{Topic: "t", Offset: int64(i), Value: []byte(v)}, Reason: "bad", Plugin: "x"}
	}
	return out
}

// TestCrashBetweenSteps stops Commit after each of its steps and restarts:
// the epoch is then either fully there (output, dead letters, positions) or
// not at all, and after the replay everything is there exactly once.
func TestCrashBetweenSteps(t *testing.T) {
	steps := []string{"staged-synced", "dead-letters-renamed", "checkpoint-tmp-synced", "slot-written", "checkpoint-stored", "part-renamed"}
	scenarios := []struct {
		name        string
		out, dead   []string
		commitPoint string // the first step after which the epoch is committed
	}{
		{"output and dead letters", []string{"o1", "o2"}, []string{"d1"}, "part-renamed"},
		{"output only", []string{"o1"}, nil, "part-renamed"},
		// An epoch that names no new file stores its checkpoint in a slot,
		// written in place: once written, a crash (the page cache survives
		// it) finds it there.
		{"dead letters only", nil, []string{"d1", "d2"}, "slot-written"},
		{"nothing", nil, nil, "slot-written"},
	}
	for _, sc := range scenarios {
		for _, step := range steps {
			t.Run(sc.name+"/"+step, func(t *testing.T) {
				ctx := context.Background()
				dir := t.TempDir()
				s := newSink(t, dir, "raw")
				open(t, s, "p")
				s.Write(ctx, 1, recs("e1"))
				if err := s.Commit(ctx, 1, pos(1)); err != nil {
					t.Fatal(err)
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
					if err := s.Write(ctx, 2, recs(sc.out...)); err != nil {
						t.Fatal(err)
					}
					if err := s.WriteRejected(ctx, 2, rejects(sc.dead...)); err != nil {
						t.Fatal(err)
					}
				}
				stage(s)
				err := s.Commit(ctx, 2, pos(2))
				if reached != (err != nil) || (err != nil && !errors.Is(err, errCrash)) {
					t.Fatalf("Commit = %v (failpoint reached: %v)", err, reached)
				}
				crash(s)

				committed := !reached || slices.Index(steps, step) >= slices.Index(steps, sc.commitPoint)
				s2 := newSink(t, dir, "raw")
				epoch, at := open(t, s2, "p")
				want := uint64(1)
				if committed {
					want = 2
				}
				if epoch != want || !at.Equal(pos(int64(want))) {
					t.Fatalf("after a crash at %s: Open = %d, %v; want %d, %v", step, epoch, at, want, pos(int64(want)))
				}
				if !committed {
					stage(s2)
					if err := s2.Commit(ctx, 2, pos(2)); err != nil {
						t.Fatal(err)
					}
				}
				var got []string
				for _, f := range visible(t, dir) {
					got = append(got, readValues(t, filepath.Join(dir, f), "raw")...)
				}
				wantOut := append([]string{"e1"}, sc.out...)
				if !slices.Equal(got, wantOut) {
					t.Errorf("visible output = %q, want %q", got, wantOut)
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

// assertNoLeftovers checks that recovery removed every staging and
// temporary file.
func assertNoLeftovers(t *testing.T, dir string, pipeline ...string) {
	t.Helper()
	p := "p"
	if len(pipeline) > 0 {
		p = pipeline[0]
	}
	entries, err := os.ReadDir(filepath.Join(dir, metaDir, p))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPref) || strings.HasPrefix(e.Name(), stagePref) {
			// The live instance's own staging file is allowed while it stages.
			t.Errorf("leftover %s after recovery", e.Name())
		}
	}
}

func TestOpenRefusesPartsWithoutCheckpoint(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newSink(t, dir, "jsonl")
	open(t, s, "p")
	s.Write(ctx, 1, recs("x"))
	if err := s.Commit(ctx, 1, pos(1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.RemoveAll(filepath.Join(dir, metaDir)); err != nil {
		t.Fatal(err)
	}
	_, _, err := newSink(t, dir, "jsonl").Open(ctx, "p")
	if err == nil || !strings.Contains(err.Error(), "no checkpoint") {
		t.Fatalf("Open over part files without checkpoints = %v; want an error saying so", err)
	}
	// Another pipeline in the same directory is not affected.
	if _, _, err := newSink(t, dir, "jsonl").Open(ctx, "q"); err != nil {
		t.Fatalf("Open of another pipeline: %v", err)
	}
}

func TestPartMovedAwayStaysCommitted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newSink(t, dir, "raw")
	open(t, s, "p")
	s.Write(ctx, 1, recs("x"))
	if err := s.Commit(ctx, 1, pos(1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A downstream job consumed and deleted the part file.
	for _, f := range visible(t, dir) {
		os.Remove(filepath.Join(dir, f))
	}
	if e, p := open(t, newSink(t, dir, "raw"), "p"); e != 1 || !p.Equal(pos(1)) {
		t.Fatalf("Open after the part file was moved away = %d, %v; want 1, %v (no replay)", e, p, pos(1))
	}
}

func TestBadPipelineNames(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b", "a\\b", "a\x00b"} {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			_, _, err := newSink(t, t.TempDir(), "raw").Open(context.Background(), name)
			if err == nil {
				t.Fatalf("Open(%q) succeeded; want an error", name)
			}
		})
	}
}

func TestDeadLetterDir(t *testing.T) {
	ctx := context.Background()
	dir, dlq := t.TempDir(), t.TempDir()
	s := newSinkDead(t, dir, "jsonl", dlq)
	open(t, s, "p")
	s.WriteRejected(ctx, 1, rejects("bad"))
	if err := s.Commit(ctx, 1, pos(1)); err != nil {
		t.Fatal(err)
	}
	s.WriteRejected(ctx, 2, rejects("uncommitted"))
	s.failpoint = func(step string) error {
		if step == "dead-letters-renamed" {
			return errCrash
		}
		return nil
	}
	s.Commit(ctx, 2, pos(2))
	crash(s)
	s2 := newSinkDead(t, dir, "jsonl", dlq)
	if e, _ := open(t, s2, "p"); e != 1 {
		t.Fatalf("Open = epoch %d, want 1", e)
	}
	files, _ := filepath.Glob(filepath.Join(dlq, "p", "*"))
	if len(files) != 1 || filepath.Base(files[0]) != deadName(1) {
		t.Fatalf("dead-letter files = %v, want only %s", files, deadName(1))
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{`"sluice.reason","value":"bad"`, `"sluice.plugin","value":"x"`, `"sluice.topic","value":"t"`, `"sluice.offset","value":"0"`} {
		if !strings.Contains(string(b), h) {
			t.Errorf("dead letter %s lacks header %s", b, h)
		}
	}
}

// A commit that failed after renaming its dead letters, retried without
// them (transforms need not be deterministic), leaves no dead letters.
func TestRetriedCommitWithoutDeadLetters(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newSink(t, dir, "raw")
	open(t, s, "p")
	s.WriteRejected(ctx, 1, rejects("first attempt"))
	s.failpoint = func(step string) error {
		if step == "dead-letters-renamed" {
			return errCrash
		}
		return nil
	}
	if err := s.Commit(ctx, 1, pos(1)); !errors.Is(err, errCrash) {
		t.Fatalf("Commit = %v, want the injected failure", err)
	}
	s.failpoint = nil
	s.Abort(ctx, 1)
	s.Write(ctx, 1, recs("ok"))
	if err := s.Commit(ctx, 1, pos(1)); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, deadDir, "p", "*")); len(files) != 0 {
		t.Fatalf("dead letters of the failed attempt remain: %v", files)
	}
}
