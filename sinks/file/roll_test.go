package file

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipelines"
)

func newRolling(t *testing.T, dir string, roll pipelines.FileRoll) *Sink {
	t.Helper()
	s, err := New(pipelines.FileSink{Path: dir, Format: "raw", Roll: &roll})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func visibleValues(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, f := range visible(t, dir) {
		out = append(out, readValues(t, filepath.Join(dir, f), "raw")...)
	}
	return out
}

// Each epoch below writes two 3-byte lines ("eN" + "\n" twice = 6 bytes
// for one-digit N); with bytes: 15 the third epoch reaches the size.
func TestRollBySize(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newRolling(t, dir, pipelines.FileRoll{Bytes: 15})
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
	// Epoch 4 is committed but waits in the next part file.
	s.Close()
	s2 := newRolling(t, dir, pipelines.FileRoll{Bytes: 15})
	if e, p := open(t, s2, "p"); e != 4 || !p.Equal(pos(4)) {
		t.Fatalf("reopen = %d, %v; want 4, %v", e, p, pos(4))
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
	s := newRolling(t, dir, pipelines.FileRoll{Interval: pipelines.Duration(time.Minute)})
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

// A crash while a rolling part file is in progress: the next instance
// carries the committed epochs over, drops the uncommitted one, and the
// rolled file holds every committed record once.
func TestRollCrashCarriesCommittedOutput(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	roll := pipelines.FileRoll{Bytes: 1 << 20}
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

func TestRollConfigErrors(t *testing.T) {
	_, err := New(pipelines.FileSink{Path: t.TempDir(), Roll: &pipelines.FileRoll{Bytes: -1}})
	if err == nil {
		t.Fatal("negative roll bytes accepted")
	}
}
