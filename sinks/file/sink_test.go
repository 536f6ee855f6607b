package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/engine"
)

// newSink returns a sink that makes every epoch its own part file, so
// committed output is visible at once; roll_test.go covers rolling.
func newSink(t *testing.T, dir, format string) *Sink {
	t.Helper()
	return newSinkDead(t, dir, format, "")
}

// newSinkDead is newSink with dead letters in deadDir.
func newSinkDead(t *testing.T, dir, format, deadDir string) *Sink {
	t.Helper()
	s, err := New(Config{Path: dir, Format: format, Roll: &RollConfig{PerEpoch: true}}, nil, deadDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func open(t *testing.T, s *Sink, pipeline string) (uint64, engine.Positions) {
	t.Helper()
	e, p, err := s.Open(context.Background(), pipeline)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return e, p
}

func recs(vals ...string) []engine.Record {
	out := make([]engine.Record, len(vals))
	for i, v := range vals {
		out[i] = engine.Record{Topic: "t", Offset: int64(i), Value: []byte(v)}
	}
	return out
}

func pos(off int64) engine.Positions { return engine.Positions{{Topic: "t"}: off} }

// visible lists the output files a reader would take.
func visible(t *testing.T, dir string) []string {
	t.Helper()
	names, err := Visible(dir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestRawCommitAndReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newSink(t, dir, "raw")
	if e, p := open(t, s, "p"); e != 0 || p != nil {
		t.Fatalf("fresh Open = %d, %v; want 0, nil", e, p)
	}
	if err := s.Write(ctx, 1, recs("a", "b")); err != nil {
		t.Fatal(err)
	}
	if got := visible(t, dir); len(got) != 0 {
		t.Fatalf("staged output is visible: %v", got)
	}
	if err := s.Commit(ctx, 1, pos(2)); err != nil {
		t.Fatal(err)
	}
	got := visible(t, dir)
	want := []string{"part-p-00000000000000000001.txt"}
	if !slices.Equal(got, want) {
		t.Fatalf("visible = %v, want %v", got, want)
	}
	b, err := os.ReadFile(filepath.Join(dir, want[0]))
	if err != nil || string(b) != "a\nb\n" {
		t.Fatalf("part file = %q, %v; want %q", b, err, "a\nb\n")
	}
	s2 := newSink(t, dir, "raw")
	if e, p := open(t, s2, "p"); e != 1 || !p.Equal(pos(2)) {
		t.Fatalf("reopen = %d, %v; want 1, %v", e, p, pos(2))
	}
	if err := s2.Commit(ctx, 3, pos(3)); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("Commit(3) after 1 = %v, want ErrFenced", err)
	}
}

// A part rename that fails for real (not a crash) must not leave the
// epoch looking committed: its checkpoint is taken back before the engine's
// Abort drops the staging file, and the epoch commits again once the way
// is clear.
func TestFailedPartRenameIsNotCommitted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newSink(t, dir, "raw")
	open(t, s, "p")
	s.Write(ctx, 1, recs("x"))
	obstacle := filepath.Join(dir, partName("p", 1, s.format))
	if err := os.MkdirAll(filepath.Join(obstacle, "in-the-way"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := s.Commit(ctx, 1, pos(1))
	if err == nil || errors.Is(err, engine.ErrFenced) || errors.Is(err, engine.ErrNotCommitted) {
		t.Fatalf("Commit onto a directory = %v; want a plain failure", err)
	}
	if err := s.Abort(ctx, 1); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(obstacle)
	if e, _ := open(t, s, "p"); e != 0 {
		t.Fatalf("Open after the failed commit = epoch %d; want 0, nothing committed", e)
	}
	s.Write(ctx, 1, recs("x"))
	if err := s.Commit(ctx, 1, pos(1)); err != nil {
		t.Fatal(err)
	}
	if got := visibleValuesOf(t, dir, "raw"); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("visible = %q, want [x]", got)
	}
}
