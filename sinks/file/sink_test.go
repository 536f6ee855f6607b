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
