package file

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/engine"
)

// tpos is task t's positions after epoch e, as process n commits them:
// processes never commit equal positions, so a commit by one never passes
// for a retry of another's.
func tpos(t engine.Task, e uint64, n int) engine.Positions {
	return engine.Positions{{Topic: "in", Partition: int32(t)}: int64(e)*10 + int64(n)}
}

func tcps(e uint64, n int, tasks ...engine.Task) map[engine.Task]engine.Checkpoint {
	out := map[engine.Task]engine.Checkpoint{}
	for _, t := range tasks {
		out[t] = engine.Checkpoint{Epoch: e, At: tpos(t, e, n)}
	}
	return out
}

func openTasks(t *testing.T, s *Sink, tasks ...engine.Task) map[engine.Task]engine.Checkpoint {
	t.Helper()
	cps, err := s.OpenTasks(context.Background(), "p", tasks)
	if err != nil {
		t.Fatalf("OpenTasks(%v): %v", tasks, err)
	}
	return cps
}

// taskRecs is one record per value, read from the partition of task t.
func taskRecs(t engine.Task, vals ...string) []engine.Record {
	out := recs(vals...)
	for i := range out {
		out[i].Topic, out[i].Partition = "in", int32(t)
	}
	return out
}

// epochsOf returns the epoch of each task in cps.
func epochsOf(cps map[engine.Task]engine.Checkpoint) map[engine.Task]uint64 {
	out := map[engine.Task]uint64{}
	for t, c := range cps {
		out[t] = c.Epoch
	}
	return out
}

func deadValues(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	files, _ := filepath.Glob(filepath.Join(dir, deadDir, "p", "*"))
	for _, f := range files {
		out = append(out, readValues(t, f, "jsonl")...)
	}
	return out
}

// assertTaskLeftovers checks that recovery left no staging or temporary
// file, and no record of a round that did not commit.
func assertTaskLeftovers(t *testing.T, dir string) {
	t.Helper()
	assertNoLeftovers(t, dir)
	entries, err := os.ReadDir(filepath.Join(dir, metaDir, "p", tasksDir))
	if err != nil {
		t.Fatal(err)
	}
	r := &Sink{dir: dir, pipeline: "p", meta: filepath.Join(dir, metaDir, "p")}
	r.tasks = &taskState{dir: filepath.Join(r.meta, tasksDir)}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("leftover %s in the tasks directory", e.Name())
			continue
		}
		n, ok := strings.CutSuffix(e.Name(), ".json")
		epoch, task, parsed := parseTaskSuffix(n)
		if !ok || !parsed {
			t.Errorf("leftover %s in the tasks directory", e.Name())
			continue
		}
		rec, err := r.readRecord(e.Name(), epoch, task)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := r.roundCommitted(rec); err != nil || !ok {
			t.Errorf("record %s of a round that did not commit is left (%v)", e.Name(), err)
		}
	}
}

// TestTaskCrashBetweenSteps stops CommitTasks after each of its steps and
// restarts: every task is then at its old or its new epoch, all of them
// the same way, with the round's output and dead letters visible exactly
// when they moved; after the replay everything is there exactly once.
func TestTaskCrashBetweenSteps(t *testing.T) {
	steps := []string{"tasks-staged-synced", "tasks-dead-letters-renamed", "tasks-record-tmp-synced",
		"tasks-record-renamed", "tasks-record-stored", "tasks-part-renamed"}
	scenarios := []struct {
		name        string
		out, dead   []string
		commitPoint string // the first step after which the round is committed
	}{
		{"output and dead letters", []string{"o1", "o2"}, []string{"d1"}, "tasks-part-renamed"},
		{"output only", []string{"o1"}, nil, "tasks-part-renamed"},
		// Without output the record's rename is the commit point: once
		// done, a crash (the page cache survives it) finds it there.
		{"dead letters only", nil, []string{"d1", "d2"}, "tasks-record-renamed"},
		{"nothing", nil, nil, "tasks-record-renamed"},
	}
	tasks := []engine.Task{0, 1, 2}
	for _, sc := range scenarios {
		for _, step := range steps {
			t.Run(sc.name+"/"+step, func(t *testing.T) {
				ctx := context.Background()
				dir := t.TempDir()
				s := newSink(t, dir, "raw")
				openTasks(t, s, tasks...)
				s.Write(ctx, 1, taskRecs(0, "e1"))
				if err := s.CommitTasks(ctx, 1, tcps(1, 0, tasks...)); err != nil {
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
				stage := func(s *Sink, round uint64) {
					if err := s.Write(ctx, round, taskRecs(2, sc.out...)); err != nil {
						t.Fatal(err)
					}
					if err := s.WriteRejected(ctx, round, rejects(sc.dead...)); err != nil {
						t.Fatal(err)
					}
				}
				stage(s, 2)
				err := s.CommitTasks(ctx, 2, tcps(2, 0, tasks...))
				if reached != (err != nil) || (err != nil && !errors.Is(err, errCrash)) {
					t.Fatalf("CommitTasks = %v (failpoint reached: %v)", err, reached)
				}
				crash(s)

				committed := !reached || slices.Index(steps, step) >= slices.Index(steps, sc.commitPoint)
				s2 := newSink(t, dir, "raw")
				want := uint64(1)
				if committed {
					want = 2
				}
				cps := openTasks(t, s2, tasks...)
				if !equalTaskCheckpoints(cps, tcps(want, 0, tasks...)) {
					t.Fatalf("after a crash at %s: OpenTasks = %v; want every task at epoch %d", step, cps, want)
				}
				if !committed {
					stage(s2, 1)
					if err := s2.CommitTasks(ctx, 1, tcps(2, 0, tasks...)); err != nil {
						t.Fatal(err)
					}
				}
				got := visibleValuesOf(t, dir, "raw")
				if wantOut := append([]string{"e1"}, sc.out...); !slices.Equal(got, wantOut) {
					t.Errorf("visible output = %q, want %q", got, wantOut)
				}
				if dead := deadValues(t, dir); !slices.Equal(dead, sc.dead) {
					t.Errorf("dead letters = %q, want %q", dead, sc.dead)
				}
				assertTaskLeftovers(t, dir)
			})
		}
	}
}

func equalTaskCheckpoints(a, b map[engine.Task]engine.Checkpoint) bool {
	return maps.EqualFunc(a, b, func(x, y engine.Checkpoint) bool { return x.Epoch == y.Epoch && x.At.Equal(y.At) })
}

// A part file that cannot be renamed (a real failure, not a crash) takes
// its round's record back: after Abort the round is not committed, and its
// staging file is gone without the record passing for "moved away".
func TestTaskFailedPartRename(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newSink(t, dir, "raw")
	openTasks(t, s, 3, 4)
	s.Write(ctx, 1, taskRecs(3, "x"))
	s.WriteRejected(ctx, 1, rejects("bad"))
	obstacle := filepath.Join(dir, taskPartName("p", 1, 3, ".txt"))
	if err := os.MkdirAll(filepath.Join(obstacle, "in-the-way"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := s.CommitTasks(ctx, 1, tcps(1, 0, 3, 4))
	if err == nil || errors.Is(err, engine.ErrFenced) || errors.Is(err, engine.ErrNotCommitted) {
		t.Fatalf("CommitTasks onto a directory = %v; want a plain failure", err)
	}
	if err := s.Abort(ctx, 1); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(obstacle)
	if cps := openTasks(t, s, 3, 4); len(cps) != 0 {
		t.Fatalf("OpenTasks after the failed round = %v; want nothing committed", cps)
	}
	if dead := deadValues(t, dir); len(dead) != 0 {
		t.Fatalf("dead letters of the failed round are visible: %q", dead)
	}
	s.Write(ctx, 1, taskRecs(3, "x"))
	if err := s.CommitTasks(ctx, 1, tcps(1, 0, 3, 4)); err != nil {
		t.Fatal(err)
	}
	if got := visibleValuesOf(t, dir, "raw"); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("visible = %q, want [x]", got)
	}
	assertTaskLeftovers(t, dir)
}

// A round of many tasks costs the same steps as a round of one: one fsync
// of the output, then under the lock the record's (file and directory) and
// the output directory's after the part's rename. The single chain's
// checkpoint files and slots are not touched.
func TestTaskRoundCost(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newSink(t, dir, "jsonl")
	tasks := []engine.Task{0, 1, 2, 3, 4, 5, 6, 7}
	openTasks(t, s, tasks...)
	for r := uint64(1); r <= 3; r++ {
		var hits []string
		s.failpoint = func(step string) error { hits = append(hits, step); return nil }
		for _, task := range tasks {
			s.Write(ctx, r, taskRecs(task, fmt.Sprintf("t%d-r%d", task, r)))
		}
		if err := s.CommitTasks(ctx, r, tcps(r, 0, tasks...)); err != nil {
			t.Fatal(err)
		}
		want := []string{"tasks-staged-synced", "tasks-record-tmp-synced", "tasks-record-renamed", "tasks-record-stored", "tasks-part-renamed"}
		if !slices.Equal(hits, want) {
			t.Fatalf("round %d of %d tasks took steps %v; want %v", r, len(tasks), hits, want)
		}
	}
	if files := visible(t, dir); len(files) != 3 {
		t.Fatalf("visible = %v; want one part file per round", files)
	}
	// Each round supersedes the one before for every task: one record left.
	if entries, _ := os.ReadDir(filepath.Join(dir, metaDir, "p", tasksDir)); len(entries) != 1 || entries[0].Name() != recordName(3, 0) {
		t.Fatalf("tasks directory holds %v; want only %s", entries, recordName(3, 0))
	}
}

// Three processes share the directory: two with disjoint tasks and one
// whose tasks overlap both, all committing at once and reopening when
// fenced, as processes whose tasks move would. Every task's epochs are
// then committed once each, in order, and the visible output is exactly
// the output of the rounds that succeeded.
func TestTaskInstancesShareADirectory(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const rounds = 30
	sets := [][]engine.Task{{0, 1}, {2, 3}, {1, 2}}
	type win struct {
		task  engine.Task
		epoch uint64
		proc  int
	}
	var (
		mu     sync.Mutex
		wins   []win
		want   []string
		fenced int
	)
	var wg sync.WaitGroup
	for n, tasks := range sets {
		s := newSink(t, dir, "jsonl")
		wg.Go(func() {
			base := openTasks(t, s, tasks...)
			round := uint64(0)
			for range rounds {
				round++
				cps := map[engine.Task]engine.Checkpoint{}
				var vals []string
				for _, task := range tasks {
					e := base[task].Epoch + round
					cps[task] = engine.Checkpoint{Epoch: e, At: tpos(task, e, n)}
					v := fmt.Sprintf("p%d-t%d-e%d", n, task, e)
					vals = append(vals, v)
					if err := s.Write(ctx, round, taskRecs(task, v)); err != nil {
						t.Error(err)
						return
					}
				}
				err := s.CommitTasks(ctx, round, cps)
				mu.Lock()
				switch {
				case err == nil:
					want = append(want, vals...)
					for task, c := range cps {
						wins = append(wins, win{task, c.Epoch, n})
					}
				case errors.Is(err, engine.ErrFenced):
					fenced++
				default:
					t.Errorf("process %d, round %d: %v", n, round, err)
				}
				mu.Unlock()
				if err != nil {
					// As the engine does: abort, then start again from the
					// directory.
					if err := s.Abort(ctx, round); err != nil {
						t.Error(err)
						return
					}
					cps, err := s.OpenTasks(ctx, "p", tasks)
					if err != nil {
						t.Error(err)
						return
					}
					base, round = cps, 0
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	got := visibleValuesOf(t, dir, "jsonl")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("visible output differs from the committed rounds' output:\n got %q\nwant %q", got, want)
	}
	last := map[engine.Task]uint64{}
	byTask := map[engine.Task][]uint64{}
	for _, w := range wins {
		byTask[w.task] = append(byTask[w.task], w.epoch)
	}
	for task, epochs := range byTask {
		slices.Sort(epochs)
		for i, e := range epochs {
			if e != uint64(i)+1 {
				t.Fatalf("task %d committed epochs %v; want each of 1..%d once", task, epochs, len(epochs))
			}
		}
		last[task] = uint64(len(epochs))
	}
	cps := openTasks(t, newSink(t, dir, "jsonl"), 0, 1, 2, 3)
	if got := epochsOf(cps); !maps.Equal(got, last) {
		t.Fatalf("OpenTasks at the end = %v; want %v", got, last)
	}
	t.Logf("%d rounds committed, %d fenced", len(want), fenced)
	assertTaskLeftovers(t, dir)
}

// A process that staged and fsynced its round, then stalled before the
// lock (a zombie), loses its task meanwhile: its round is refused whole
// and none of its output becomes visible.
func TestTaskZombieStalledBeforeCommit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	zombie := newSink(t, dir, "raw")
	openTasks(t, zombie, 0, 1)
	zombie.Write(ctx, 1, taskRecs(0, "zombie-0"))
	zombie.Write(ctx, 1, taskRecs(1, "zombie-1"))
	stalled, resume := make(chan struct{}), make(chan struct{})
	zombie.failpoint = func(step string) error {
		if step == "tasks-staged-synced" {
			close(stalled)
			<-resume
		}
		return nil
	}
	errc := make(chan error, 1)
	go func() { errc <- zombie.CommitTasks(ctx, 1, tcps(1, 0, 0, 1)) }()
	<-stalled

	other := newSink(t, dir, "raw")
	openTasks(t, other, 1)
	other.Write(ctx, 1, taskRecs(1, "new-owner"))
	if err := other.CommitTasks(ctx, 1, tcps(1, 1, 1)); err != nil {
		t.Fatal(err)
	}
	close(resume)
	if err := <-errc; !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("the zombie's CommitTasks = %v; want ErrFenced", err)
	}
	zombie.Abort(ctx, 1)
	if got := visibleValuesOf(t, dir, "raw"); !slices.Equal(got, []string{"new-owner"}) {
		t.Fatalf("visible = %q; want only the new owner's output", got)
	}
	if cps := openTasks(t, newSink(t, dir, "raw"), 0, 1); !equalTaskCheckpoints(cps, tcps(1, 1, 1)) {
		t.Fatalf("OpenTasks = %v; want task 1 at the new owner's epoch 1, task 0 at none", cps)
	}
}

// The first OpenTasks of a pipeline that ran as one chain rolls the
// chain's open part file and marks its checkpoint: a process still
// committing the chain is fenced, and the chain cannot be opened again.
// A crash in between is finished by the next OpenTasks.
func TestTaskSplitEndsTheChain(t *testing.T) {
	for _, crashAt := range []string{"", "tasks-chain-marked"} {
		t.Run("crash at "+crashAt, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			chain := newRolling(t, dir, nil)
			open(t, chain, "p")
			at := engine.Positions{{Topic: "in", Partition: 0}: 2, {Topic: "in", Partition: 1}: 12}
			for e := uint64(1); e <= 2; e++ {
				chain.Write(ctx, e, recs(fmt.Sprintf("chain%d", e)))
				if err := chain.Commit(ctx, e, at); err != nil {
					t.Fatal(err)
				}
			}
			if files := visible(t, dir); len(files) != 0 {
				t.Fatalf("the chain's part file rolled early: %v", files)
			}
			tasks := newSink(t, dir, "raw")
			if crashAt != "" {
				tasks.failpoint = func(step string) error {
					if step == crashAt {
						return errCrash
					}
					return nil
				}
				if _, err := tasks.OpenTasks(ctx, "p", []engine.Task{0, 1}); !errors.Is(err, errCrash) {
					t.Fatalf("OpenTasks = %v; want the injected crash", err)
				}
				crash(tasks)
				tasks = newSink(t, dir, "raw")
			}
			cps := openTasks(t, tasks, 0, 1)
			want := map[engine.Task]engine.Checkpoint{0: {Epoch: 2, At: at.OfTask(0)}, 1: {Epoch: 2, At: at.OfTask(1)}}
			if !equalTaskCheckpoints(cps, want) {
				t.Fatalf("OpenTasks = %v; want %v", cps, want)
			}
			if files := visible(t, dir); !slices.Equal(files, []string{partName("p", 2, chain.format)}) {
				t.Fatalf("visible = %v; want the chain's part file rolled", files)
			}
			chain.Write(ctx, 3, recs("chain3"))
			if err := chain.Commit(ctx, 3, at); !errors.Is(err, engine.ErrFenced) {
				t.Fatalf("the chain's Commit after the split = %v; want ErrFenced", err)
			}
			chain.Abort(ctx, 3)
			if err := chain.Close(); err != nil {
				t.Fatal(err)
			}
			if _, _, err := newSink(t, dir, "raw").Open(ctx, "p"); err == nil || !strings.Contains(err.Error(), "split into tasks") {
				t.Fatalf("Open of the chain after the split = %v; want a refusal", err)
			}
			tasks.Write(ctx, 1, taskRecs(1, "task1"))
			if err := tasks.CommitTasks(ctx, 1, map[engine.Task]engine.Checkpoint{0: {Epoch: 3, At: at.OfTask(0)}, 1: {Epoch: 3, At: tpos(1, 3, 0)}}); err != nil {
				t.Fatal(err)
			}
			if got := committedValues(t, dir, "raw"); !slices.Equal(got, []string{"chain1", "chain2", "task1"}) {
				t.Fatalf("committed output = %q; want each epoch's once", got)
			}
			openTasks(t, newSink(t, dir, "raw"), 0, 1) // deletes the fenced chain's staging file
			assertTaskLeftovers(t, dir)
		})
	}
}

// A pipeline split into tasks from the start fences a chain process that
// opened before it: the split marks an epoch-0 checkpoint.
func TestTaskSplitFencesAFreshChain(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	chain := newSink(t, dir, "raw")
	open(t, chain, "p")
	tasks := newSink(t, dir, "raw")
	openTasks(t, tasks, 0)
	tasks.Write(ctx, 1, taskRecs(0, "task"))
	if err := tasks.CommitTasks(ctx, 1, tcps(1, 0, 0)); err != nil {
		t.Fatal(err)
	}
	chain.Write(ctx, 1, recs("chain"))
	if err := chain.Commit(ctx, 1, pos(1)); !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("the chain's first Commit after a split = %v; want ErrFenced", err)
	}
	if got := visibleValuesOf(t, dir, "raw"); !slices.Equal(got, []string{"task"}) {
		t.Fatalf("visible = %q; want only the task's output", got)
	}
}

// Without any checkpoint, part files of a pipeline split into tasks are
// output that starting over would write again.
func TestTaskOpenRefusesPartsWithoutRecords(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newSink(t, dir, "raw")
	openTasks(t, s, 0)
	s.Write(ctx, 1, taskRecs(0, "x"))
	if err := s.CommitTasks(ctx, 1, tcps(1, 0, 0)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.RemoveAll(filepath.Join(dir, metaDir)); err != nil {
		t.Fatal(err)
	}
	for _, open := range []func(s *Sink) error{
		func(s *Sink) error { _, err := s.OpenTasks(ctx, "p", []engine.Task{0}); return err },
		func(s *Sink) error { _, _, err := s.Open(ctx, "p"); return err },
	} {
		if err := open(newSink(t, dir, "raw")); err == nil || !strings.Contains(err.Error(), "no checkpoint") {
			t.Fatalf("opening over task part files without records = %v; want an error saying so", err)
		}
	}
}

// The check for part files without checkpoints reads names exactly: a
// neighbour pipeline's parts that merely start like a round's are not p's.
func TestOrphanPartsOfANeighbour(t *testing.T) {
	dir := t.TempDir()
	// Pipeline "p-00000000000000000001-tom", epoch 1.
	neighbour := "part-p-00000000000000000001-tom-00000000000000000001.txt"
	if err := os.WriteFile(filepath.Join(dir, neighbour), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if e, _ := open(t, newSink(t, dir, "raw"), "p"); e != 0 {
		t.Fatalf("Open = epoch %d; want a fresh start", e)
	}
	openTasks(t, newSink(t, dir, "raw"), 0)
}

func TestTaskNames(t *testing.T) {
	for _, tc := range []struct {
		epoch uint64
		task  engine.Task
	}{{1, 0}, {1<<64 - 1, 99999}, {7, 123456}} {
		n := taskSuffix(tc.epoch, tc.task)
		e, task, ok := parseTaskSuffix(n)
		if !ok || e != tc.epoch || task != tc.task {
			t.Errorf("parseTaskSuffix(%q) = %d, %d, %v", n, e, task, ok)
		}
	}
	for _, bad := range []string{"", "00000000000000000001", "00000000000000000001-t", "00000000000000000001-x1", "0000000000000000000a-t1", "00000000000000000001-t-1"} {
		if _, _, ok := parseTaskSuffix(bad); ok {
			t.Errorf("parseTaskSuffix(%q) accepted", bad)
		}
	}
}

const (
	killTasks     = 4    // partitions of the input, one task each
	killTaskTotal = 3000 // records per task
	killTaskBatch = 37   // records per task and round
)

// TestKillTasksHelper is not a test: TestSIGKILLTasks runs it in child
// processes, each of which writes the sequence 0..killTaskTotal-1 of each
// of its tasks through the sink, resuming from what the directory says and
// starting again from it whenever another process fences it, and prints a
// line after every commit.
func TestKillTasksHelper(t *testing.T) {
	dir := os.Getenv("SLUICE_KILL_TASKS_DIR")
	if dir == "" {
		t.Skip("helper process for TestSIGKILLTasks")
	}
	var tasks []engine.Task
	for _, f := range strings.Split(os.Getenv("SLUICE_KILL_TASKS"), ",") {
		var n int
		fmt.Sscan(f, &n)
		tasks = append(tasks, engine.Task(n))
	}
	ctx := context.Background()
	s, err := New(Config{Path: dir, Format: "raw"}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	for {
		base, err := s.OpenTasks(ctx, "seq", tasks)
		if err != nil {
			t.Fatal(err)
		}
		next := map[engine.Task]int64{}
		for _, task := range tasks {
			next[task] = base[task].At[engine.TopicPartition{Topic: "seq", Partition: int32(task)}]
		}
		for round := uint64(1); ; round++ {
			cps := map[engine.Task]engine.Checkpoint{}
			left := false
			for _, task := range tasks {
				tp := engine.TopicPartition{Topic: "seq", Partition: int32(task)}
				n := min(killTaskBatch, killTaskTotal-next[task])
				recs := make([]engine.Record, n)
				for i := range recs {
					recs[i] = engine.Record{Topic: "seq", Partition: tp.Partition, Offset: next[task] + int64(i),
						Value: fmt.Appendf(nil, "%d:%d", task, next[task]+int64(i))}
				}
				if err := s.Write(ctx, round, recs); err != nil {
					t.Fatal(err)
				}
				left = left || next[task]+n < killTaskTotal
				cps[task] = engine.Checkpoint{Epoch: base[task].Epoch + round, At: engine.Positions{tp: next[task] + n}}
			}
			err := s.CommitTasks(ctx, round, cps)
			if errors.Is(err, engine.ErrFenced) {
				s.Abort(ctx, round)
				break // start again from the directory, as the engine does
			}
			if err != nil {
				t.Fatal(err)
			}
			fmt.Printf("committed %d\n", round)
			for task, c := range cps {
				next[task] = c.At[engine.TopicPartition{Topic: "seq", Partition: int32(task)}]
			}
			if !left {
				s.Close()
				return
			}
		}
	}
}

// TestSIGKILLTasks runs three writer processes at once on one directory,
// two with disjoint tasks and one overlapping both, kills them at
// arbitrary points and restarts them: in the end every task's sequence is
// there exactly once, and OpenTasks agrees with it.
func TestSIGKILLTasks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	sets := []string{"0,1", "2,3", "1,2"}
	run := func(set string, killAfter int) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillTasksHelper$")
		cmd.Env = append(os.Environ(), "SLUICE_KILL_TASKS_DIR="+dir, "SLUICE_KILL_TASKS="+set)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Error(err)
			return
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Error(err)
			return
		}
		sc := bufio.NewScanner(out)
		seen := 0
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "committed ") {
				seen++
			}
			if killAfter > 0 && seen == killAfter {
				cmd.Process.Kill()
				break
			}
		}
		io.Copy(io.Discard, out)
		if err := cmd.Wait(); killAfter == 0 && err != nil {
			t.Errorf("helper for tasks %s: %v\n%s", set, err, stderr.String())
		}
	}
	for _, kills := range [][]int{{3, 5, 4}, {11, 1, 7}, {2, 20, 9}, {0, 0, 0}} {
		var wg sync.WaitGroup
		for i, set := range sets {
			wg.Go(func() { run(set, kills[i]) })
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
	count := map[string]int{}
	for _, f := range visible(t, dir) {
		for _, v := range readValues(t, filepath.Join(dir, f), "raw") {
			count[v]++
		}
	}
	for task := range killTasks {
		for off := range killTaskTotal {
			if n := count[fmt.Sprintf("%d:%d", task, off)]; n != 1 {
				t.Fatalf("task %d, offset %d appears %d times; want once", task, off, n)
			}
		}
	}
	if len(count) != killTasks*killTaskTotal {
		t.Fatalf("%d distinct values visible; want %d", len(count), killTasks*killTaskTotal)
	}
	s := newSink(t, dir, "raw")
	cps, err := s.OpenTasks(context.Background(), "seq", []engine.Task{0, 1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	for task := range engine.Task(killTasks) {
		if at := cps[task].At[engine.TopicPartition{Topic: "seq", Partition: int32(task)}]; at != killTaskTotal {
			t.Fatalf("OpenTasks: task %d at %v; want %d", task, cps[task], killTaskTotal)
		}
	}
}
