package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/engine"
)

// assertTaskRollLeftovers is assertTaskLeftovers for a rolling sink: the
// tasks directory may hold slots besides records, and only the open file
// of a live instance besides them (live names its owner, or nil).
func assertTaskRollLeftovers(t *testing.T, dir string, live *Sink) {
	t.Helper()
	assertNoLeftovers(t, dir)
	entries, err := os.ReadDir(filepath.Join(dir, metaDir, "p", tasksDir))
	if err != nil {
		t.Fatal(err)
	}
	r := &Sink{dir: dir, pipeline: "p", meta: filepath.Join(dir, metaDir, "p")}
	r.tasks = &taskState{dir: filepath.Join(r.meta, tasksDir)}
	for _, e := range entries {
		name := e.Name()
		if _, ok := parseTaskSlotName(name); ok {
			continue
		}
		if live != nil && live.out != nil && name == live.out.name {
			continue
		}
		n, ok := strings.CutSuffix(name, ".json")
		epoch, task, parsed := parseTaskSuffix(n)
		if !ok || !parsed {
			t.Errorf("leftover %s in the tasks directory", name)
			continue
		}
		rec, err := r.readRecord(name, epoch, task)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := r.roundCommitted(rec); err != nil || !ok {
			t.Errorf("record %s of a round that did not commit is left (%v)", name, err)
		}
	}
}

// TestTaskRollCrashBetweenSteps stops CommitTasks of a rolling sink after
// each of its steps, kills the instance and opens the tasks in another:
// every task is at its old or its new epoch, all alike; the other's
// OpenTasks seals the dead instance's open file, so exactly the committed
// rounds are visible; after the replay and Close everything is there
// exactly once. Rounds that append to the open file (the first, which
// starts it, and a later one), and rounds that roll it (by size, or for
// dead letters) with committed rounds already in it.
func TestTaskRollCrashBetweenSteps(t *testing.T) {
	steps := []string{"tasks-staged-synced", "tasks-stage-named", "tasks-slot-written", "tasks-slot-stored",
		"tasks-dead-letters-renamed", "tasks-record-tmp-synced", "tasks-record-renamed", "tasks-record-stored", "tasks-part-renamed"}
	scenarios := []struct {
		name        string
		before      []string // rounds committed first, one value each
		out, dead   []string
		roll        *RollConfig
		commitPoint string
	}{
		{"first append", nil, []string{"o1", "o2"}, nil, nil, "tasks-slot-written"},
		{"later append", []string{"e1", "e2"}, []string{"o1"}, nil, nil, "tasks-slot-written"},
		{"empty round", []string{"e1"}, nil, nil, nil, "tasks-slot-written"},
		{"roll by size", []string{"e1", "e2"}, []string{"o1"}, nil, &RollConfig{Bytes: 7}, "tasks-part-renamed"},
		{"roll for dead letters", []string{"e1"}, []string{"o1"}, []string{"d1"}, nil, "tasks-part-renamed"},
		{"dead letters only", []string{"e1"}, nil, []string{"d1"}, nil, "tasks-part-renamed"},
	}
	tasks := []engine.Task{0, 1, 2}
	for _, sc := range scenarios {
		for _, step := range steps {
			t.Run(sc.name+"/"+step, func(t *testing.T) {
				ctx := context.Background()
				dir := t.TempDir()
				s := newRolling(t, dir, sc.roll)
				openTasks(t, s, tasks...)
				for i, v := range sc.before {
					r := uint64(i + 1)
					s.Write(ctx, r, taskRecs(0, v))
					if err := s.CommitTasks(ctx, r, tcps(r, 0, tasks...)); err != nil {
						t.Fatal(err)
					}
				}
				if got := visibleValuesOf(t, dir, "raw"); sc.roll == nil && len(got) != 0 {
					t.Fatalf("visible before the roll: %q", got)
				}
				reached := false
				s.failpoint = func(at string) error {
					if at == step {
						reached = true
						return errCrash
					}
					return nil
				}
				r := uint64(len(sc.before) + 1)
				stage := func(s *Sink, round uint64) {
					if err := s.Write(ctx, round, taskRecs(2, sc.out...)); err != nil {
						t.Fatal(err)
					}
					if err := s.WriteRejected(ctx, round, rejects(sc.dead...)); err != nil {
						t.Fatal(err)
					}
				}
				stage(s, r)
				err := s.CommitTasks(ctx, r, tcps(r, 0, tasks...))
				if reached != (err != nil) || (err != nil && !errors.Is(err, errCrash)) {
					t.Fatalf("CommitTasks = %v (failpoint reached: %v)", err, reached)
				}
				if !reached && !slices.Contains([]string{"tasks-staged-synced", "tasks-slot-written", "tasks-slot-stored", "tasks-record-stored"}, step) {
					t.Skip("step not on this round's path")
				}
				crash(s)

				committed := !reached || slices.Index(steps, step) >= slices.Index(steps, sc.commitPoint)
				if sc.commitPoint == "tasks-slot-written" && slices.Index(steps, step) > slices.Index(steps, "tasks-slot-stored") {
					committed = true
				}
				want := r - 1
				if committed {
					want = r
				}
				s2 := newRolling(t, dir, sc.roll)
				cps := openTasks(t, s2, tasks...)
				if want == 0 {
					if len(cps) != 0 {
						t.Fatalf("after a crash at %s: OpenTasks = %v; want nothing", step, cps)
					}
				} else if !equalTaskCheckpoints(cps, tcps(want, 0, tasks...)) {
					t.Fatalf("after a crash at %s: OpenTasks = %v; want every task at epoch %d", step, cps, want)
				}
				// The dead instance's committed output is visible now.
				wantOut := slices.Clone(sc.before)
				if committed {
					wantOut = append(wantOut, sc.out...)
				}
				slices.Sort(wantOut)
				if got := visibleValuesOf(t, dir, "raw"); !slices.Equal(sorted(got), wantOut) {
					t.Errorf("visible after OpenTasks = %q, want %q", got, wantOut)
				}
				assertTaskRollLeftovers(t, dir, nil)
				if !committed {
					stage(s2, 1)
					if err := s2.CommitTasks(ctx, 1, tcps(r, 0, tasks...)); err != nil {
						t.Fatal(err)
					}
				}
				if err := s2.Close(); err != nil {
					t.Fatal(err)
				}
				wantOut = append(slices.Clone(sc.before), sc.out...)
				slices.Sort(wantOut)
				if got := visibleValuesOf(t, dir, "raw"); !slices.Equal(sorted(got), wantOut) {
					t.Errorf("visible output = %q, want %q", got, wantOut)
				}
				if dead := deadValues(t, dir); !slices.Equal(dead, sc.dead) {
					t.Errorf("dead letters = %q, want %q", dead, sc.dead)
				}
				assertTaskRollLeftovers(t, dir, nil)
			})
		}
	}
}

// A crash of Close's seal, before or after its rename: the next OpenTasks
// leaves the output visible exactly once.
func TestTaskSealCrash(t *testing.T) {
	for _, step := range []string{"tasks-seal-synced", "tasks-seal-renamed"} {
		t.Run(step, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := newRolling(t, dir, nil)
			openTasks(t, s, 0, 1)
			for r := uint64(1); r <= 2; r++ {
				s.Write(ctx, r, taskRecs(1, "v"+string(rune('0'+r))))
				if err := s.CommitTasks(ctx, r, tcps(r, 0, 0, 1)); err != nil {
					t.Fatal(err)
				}
			}
			s.Write(ctx, 3, taskRecs(1, "staged"))
			s.failpoint = func(at string) error {
				if at == step {
					return errCrash
				}
				return nil
			}
			if err := s.Close(); !errors.Is(err, errCrash) {
				t.Fatalf("Close = %v; want the crash", err)
			}
			crash(s)
			s2 := newRolling(t, dir, nil)
			if cps := openTasks(t, s2, 0, 1); !equalTaskCheckpoints(cps, tcps(2, 0, 0, 1)) {
				t.Fatalf("OpenTasks = %v; want epoch 2", cps)
			}
			if got := visibleValuesOf(t, dir, "raw"); !slices.Equal(got, []string{"v1", "v2"}) {
				t.Fatalf("visible = %q, want [v1 v2]", got)
			}
			if files := visible(t, dir); len(files) != 1 || files[0] != taskPartName("p", 2, 0, ".txt") {
				t.Fatalf("visible files = %v; want the part named by the last round", files)
			}
			assertTaskRollLeftovers(t, dir, nil)
		})
	}
}

// A round that does not roll costs the output's fsync and the slot's; the
// round that starts an open file fsyncs the tasks directory once more.
// Committed rounds stay hidden until the roll, which names the part file
// by the rolling round.
func TestTaskRollRoundCost(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newRolling(t, dir, &RollConfig{Bytes: 50})
	tasks := []engine.Task{0, 1, 2, 3}
	openTasks(t, s, tasks...)
	var hits []string
	s.failpoint = func(step string) error { hits = append(hits, step); return nil }
	var vals []string
	for r := uint64(1); r <= 3; r++ {
		hits = nil
		for _, task := range tasks {
			v := "t" + string(rune('0'+task)) + "r" + string(rune('0'+r))
			vals = append(vals, v)
			s.Write(ctx, r, taskRecs(task, v))
		}
		if err := s.CommitTasks(ctx, r, tcps(r, 0, tasks...)); err != nil {
			t.Fatal(err)
		}
		want := []string{"tasks-staged-synced", "tasks-slot-written", "tasks-slot-stored"}
		switch r {
		case 1:
			want = []string{"tasks-staged-synced", "tasks-stage-named", "tasks-slot-written", "tasks-slot-stored"}
		case 3: // 60 bytes: the round rolls
			want = []string{"tasks-staged-synced", "tasks-record-tmp-synced", "tasks-record-renamed", "tasks-record-stored", "tasks-part-renamed"}
		}
		if !slices.Equal(hits, want) {
			t.Fatalf("round %d took steps %v; want %v", r, hits, want)
		}
		if files := visible(t, dir); r < 3 && len(files) != 0 {
			t.Fatalf("visible before the roll: %v", files)
		}
	}
	if files := visible(t, dir); len(files) != 1 || files[0] != taskPartName("p", 3, 0, ".txt") {
		t.Fatalf("visible = %v; want one part file named by round 3", files)
	}
	if got := visibleValuesOf(t, dir, "raw"); !slices.Equal(got, vals) {
		t.Fatalf("visible = %q, want %q", got, vals)
	}
}

// A zombie (alive, its file locked) keeps its open file through another
// instance's OpenTasks of the same tasks; the other commits on top of the
// zombie's checkpoints, the zombie's next round is fenced and never
// visible, and its Close makes only its committed rounds visible.
func TestTaskRollZombie(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	zombie := newRolling(t, dir, nil)
	openTasks(t, zombie, 0, 1)
	zombie.Write(ctx, 1, taskRecs(0, "z1"))
	if err := zombie.CommitTasks(ctx, 1, tcps(1, 1, 0, 1)); err != nil {
		t.Fatal(err)
	}
	other := newRolling(t, dir, nil)
	if cps := openTasks(t, other, 0, 1); !equalTaskCheckpoints(cps, tcps(1, 1, 0, 1)) {
		t.Fatalf("OpenTasks = %v; want the zombie's epoch 1", cps)
	}
	if files := visible(t, dir); len(files) != 0 {
		t.Fatalf("the zombie's open file was sealed while it lives: %v", files)
	}
	other.Write(ctx, 1, taskRecs(1, "o2"))
	if err := other.CommitTasks(ctx, 1, tcps(2, 2, 0, 1)); err != nil {
		t.Fatal(err)
	}
	zombie.Write(ctx, 2, taskRecs(0, "z2"))
	if err := zombie.CommitTasks(ctx, 2, tcps(2, 1, 0, 1)); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("the zombie's round = %v; want ErrFenced", err)
	}
	zombie.Abort(ctx, 2)
	if err := zombie.Close(); err != nil {
		t.Fatal(err)
	}
	if got := visibleValuesOf(t, dir, "raw"); !slices.Equal(got, []string{"z1"}) {
		t.Fatalf("visible after the zombie's Close = %q, want [z1]", got)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	if got := visibleValuesOf(t, dir, "raw"); !slices.Equal(sorted(got), []string{"o2", "z1"}) {
		t.Fatalf("visible = %q, want [o2 z1]", got)
	}
	third := newRolling(t, dir, nil)
	if cps := openTasks(t, third, 0, 1); !equalTaskCheckpoints(cps, tcps(2, 2, 0, 1)) {
		t.Fatalf("OpenTasks = %v; want epoch 2", cps)
	}
	// Both closed instances' slots are superseded by the other's, which
	// holds the tasks' newest epochs.
	entries, _ := os.ReadDir(filepath.Join(dir, metaDir, "p", tasksDir))
	ids := map[string]bool{}
	for _, e := range entries {
		if id, ok := parseTaskSlotName(e.Name()); ok {
			ids[id] = true
		}
	}
	if len(ids) != 2 {
		t.Fatalf("slots of %d instances left (%v); want the other's and the third's", len(ids), entries)
	}
	assertTaskRollLeftovers(t, dir, nil)
}

func sorted(v []string) []string {
	v = slices.Clone(v)
	slices.Sort(v)
	return v
}

// An OpenTasks that crashes while sealing a dead instance's open file,
// after cutting and fsyncing it: the next OpenTasks seals it, and the
// committed rounds are visible exactly once.
func TestTaskSealDeadCrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newRolling(t, dir, nil)
	openTasks(t, s, 0, 1)
	for r := uint64(1); r <= 2; r++ {
		s.Write(ctx, r, taskRecs(1, "v"+string(rune('0'+r))))
		if err := s.CommitTasks(ctx, r, tcps(r, 0, 0, 1)); err != nil {
			t.Fatal(err)
		}
	}
	s.Write(ctx, 3, taskRecs(1, "staged"))
	crash(s)
	s2 := newRolling(t, dir, nil)
	s2.failpoint = func(at string) error {
		if at == "tasks-seal-dead-synced" {
			return errCrash
		}
		return nil
	}
	if _, err := s2.OpenTasks(ctx, "p", []engine.Task{0, 1}); !errors.Is(err, errCrash) {
		t.Fatalf("OpenTasks = %v; want the crash", err)
	}
	crash(s2)
	if files := visible(t, dir); len(files) != 0 {
		t.Fatalf("visible before the seal: %v", files)
	}
	s3 := newRolling(t, dir, nil)
	if cps := openTasks(t, s3, 0, 1); !equalTaskCheckpoints(cps, tcps(2, 0, 0, 1)) {
		t.Fatalf("OpenTasks = %v; want epoch 2", cps)
	}
	if got := visibleValuesOf(t, dir, "raw"); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Fatalf("visible = %q, want [v1 v2]", got)
	}
	assertTaskRollLeftovers(t, dir, nil)
}
