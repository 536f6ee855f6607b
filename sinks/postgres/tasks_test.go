package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/engine"
)

// taskModes are the sink's two staging paths: COPY into the target, and
// COPY into a temporary table merged at commit, here on keys that every
// process writes.
var taskModes = []struct {
	name string
	cfg  func(dsn, schema string) Config
}{
	{"append", func(dsn, schema string) Config {
		return Config{DSN: dsn, Table: schema + ".out", CreateTable: true}
	}},
	{"upsert", func(dsn, schema string) Config {
		return Config{DSN: dsn, Table: schema + ".out", CreateTable: true,
			Columns: map[string]string{"k": "key", "v": "value"}, UpsertKey: []string{"k"}}
	}},
}

// openTaskSink returns a sink of cfg opened on tasks of pipeline p, and
// their checkpoints.
func openTaskSink(t *testing.T, cfg Config, tasks []engine.Task) (*Sink, map[engine.Task]engine.Checkpoint) {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cps, err := s.OpenTasks(ctx, "p", tasks)
	if err != nil {
		t.Fatalf("OpenTasks(%v): %v", tasks, err)
	}
	return s, cps
}

// taskRecords returns ten records per task, read from partition task of
// topic in at offset off, keyed k0 to k9 in an order that differs from
// call to call.
func taskRecords(tasks []engine.Task, off int64, value func(engine.Task) string) []engine.Record {
	keys := rand.Perm(10)
	recs := make([]engine.Record, 0, len(tasks)*len(keys))
	for _, t := range tasks {
		for _, k := range keys {
			recs = append(recs, engine.Record{Topic: "in", Partition: int32(t), Offset: off,
				Key: fmt.Appendf(nil, "k%d", k), Value: fmt.Appendf(nil, "%s-k%d", value(t), k)})
		}
	}
	return recs
}

// nextCheckpoints returns the checkpoints of tasks at epoch base[t]+1,
// task t's positions being partition t of topic in at off.
func nextCheckpoints(tasks []engine.Task, base map[engine.Task]engine.Checkpoint, off int64) map[engine.Task]engine.Checkpoint {
	out := make(map[engine.Task]engine.Checkpoint, len(tasks))
	for _, t := range tasks {
		out[t] = engine.Checkpoint{Epoch: base[t].Epoch + 1, At: engine.Positions{{Topic: "in", Partition: int32(t)}: off}}
	}
	return out
}

// Two processes running disjoint, interleaved task sets commit round after
// round at the same time, writing the same rows' keys: neither is ever
// fenced, and they never deadlock (PostgreSQL would end one transaction
// with a deadlock error, which fails the test like any other).
func TestTasksDisjointCommitsNeverDeadlock(t *testing.T) {
	testDSN(t)
	const rounds = 100
	for _, mode := range taskModes {
		t.Run(mode.name, func(t *testing.T) {
			dsn, schema, db := freshSchema(t)
			cfg := mode.cfg(dsn, schema)
			sets := [][]engine.Task{{0, 2, 4, 6}, {1, 3, 5, 7}}
			errs := make([]error, len(sets))
			var wg sync.WaitGroup
			for n, tasks := range sets {
				s, base := openTaskSink(t, cfg, tasks)
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					defer cancel()
					for r := uint64(1); r <= rounds; r++ {
						recs := taskRecords(tasks, int64(r), func(t engine.Task) string { return fmt.Sprintf("i%d-t%d-r%d", n, t, r) })
						if err := s.Write(ctx, r, recs); err != nil {
							errs[n] = fmt.Errorf("instance %d, Write(round %d): %w", n, r, err)
							return
						}
						cps := nextCheckpoints(tasks, base, int64(r))
						if err := s.CommitTasks(ctx, r, cps); err != nil {
							errs[n] = fmt.Errorf("instance %d, CommitTasks(round %d): %w", n, r, err)
							return
						}
						base = cps
					}
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}

			all := []engine.Task{0, 1, 2, 3, 4, 5, 6, 7}
			_, cps := openTaskSink(t, cfg, all)
			for _, task := range all {
				want := engine.Positions{{Topic: "in", Partition: int32(task)}: rounds}
				if cp := cps[task]; cp.Epoch != rounds || !cp.At.Equal(want) {
					t.Errorf("task %d's checkpoint = %v; want epoch %d at %v", task, cp, rounds, want)
				}
			}
			var rows int
			if err := db.QueryRow(context.Background(), fmt.Sprintf("SELECT count(*) FROM %s.out", schema)).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			want := rounds * len(all) * 10
			if mode.name == "upsert" {
				want = 10 // one row per key
			}
			if rows != want {
				t.Errorf("%d rows in the table; want %d", rows, want)
			}
		})
	}
}

// Two processes that both believe they run the same tasks (a zombie and
// its successor) commit the same epochs at the same time, again and again:
// each time exactly one commits and the other is fenced; a deadlock error
// fails the test.
func TestTasksOverlappingCommitsFenceWithoutDeadlock(t *testing.T) {
	testDSN(t)
	const tries = 30
	for _, mode := range taskModes {
		t.Run(mode.name, func(t *testing.T) {
			dsn, schema, db := freshSchema(t)
			cfg := mode.cfg(dsn, schema)
			all := []engine.Task{0, 1, 2, 3, 4, 5, 6, 7}
			for try := range tries {
				a, base := openTaskSink(t, cfg, all)
				b, _ := openTaskSink(t, cfg, all)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				sinks := []*Sink{a, b}
				errs := make([]error, len(sinks))
				var wg sync.WaitGroup
				for n, s := range sinks {
					wg.Go(func() {
						// Other positions per instance: the loser's round is
						// no retry of the winner's.
						off := int64(2*try + n)
						if err := s.Write(ctx, 1, taskRecords(all, off, func(t engine.Task) string { return fmt.Sprintf("try%d-i%d-t%d", try, n, t) })); err != nil {
							errs[n] = err
							return
						}
						errs[n] = s.CommitTasks(ctx, 1, nextCheckpoints(all, base, off))
					})
				}
				wg.Wait()
				cancel()
				a.Close()
				b.Close()
				ok := 0
				for n, err := range errs {
					switch {
					case err == nil:
						ok++
					case !errors.Is(err, engine.ErrFenced):
						t.Fatalf("try %d, instance %d: %v; want nil or ErrFenced", try, n, err)
					}
				}
				if ok != 1 {
					t.Fatalf("try %d: %d instances committed the same epochs; want exactly 1", try, ok)
				}
			}
			_, cps := openTaskSink(t, cfg, all)
			for _, task := range all {
				if cps[task].Epoch != tries {
					t.Errorf("task %d's epoch = %d; want %d", task, cps[task].Epoch, tries)
				}
			}
			if mode.name == "append" {
				var rows int
				if err := db.QueryRow(context.Background(), fmt.Sprintf("SELECT count(*) FROM %s.out", schema)).Scan(&rows); err != nil {
					t.Fatal(err)
				}
				if want := tries * len(all) * 10; rows != want {
					t.Errorf("%d rows in the table; want %d (the winners' only)", rows, want)
				}
			}
		})
	}
}

// A task without a row of its own commits on top of the epoch it derived
// from the pipeline's single-chain row, as that row is at commit time: a
// single-chain commit that landed after OpenTasks fences the round.
func TestTasksFirstCommitRereadsSingleChain(t *testing.T) {
	dsn, schema, _ := freshSchema(t)
	cfg := taskModes[0].cfg(dsn, schema)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	old, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { old.Close() })
	if _, _, err := old.Open(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	at := func(e int64) engine.Positions { return engine.Positions{{Topic: "in", Partition: 0}: e} }
	if err := old.Commit(ctx, 1, at(1)); err != nil {
		t.Fatal(err)
	}
	s, base := openTaskSink(t, cfg, []engine.Task{0})
	if base[0].Epoch != 1 {
		t.Fatalf("OpenTasks = %v; want task 0 at epoch 1", base)
	}
	if err := old.Commit(ctx, 2, at(2)); err != nil {
		t.Fatal(err)
	}
	// Other positions than the single chain's: not the same epoch again.
	err = s.CommitTasks(ctx, 1, map[engine.Task]engine.Checkpoint{0: {Epoch: 2, At: at(7)}})
	if !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("CommitTasks on epoch 1 after the single chain reached 2 = %v; want ErrFenced", err)
	}
	// Reopened, the task derives epoch 2 and goes on from there.
	s, base = openTaskSink(t, cfg, []engine.Task{0})
	if base[0].Epoch != 2 {
		t.Fatalf("OpenTasks = %v; want task 0 at epoch 2", base)
	}
	if err := s.CommitTasks(ctx, 1, map[engine.Task]engine.Checkpoint{0: {Epoch: 3, At: at(3)}}); err != nil {
		t.Fatal(err)
	}
}
