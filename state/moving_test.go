package state

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkatest"
)

// TestTaskMovesBetweenProcesses: two processes' backends (separate data
// directories, one changelog). Task 1 runs in A, which prepares an epoch
// the sink never commits; the task moves to B, which restores exactly the
// committed state from the changelog alone, commits an epoch of its own,
// and the task moves back to A, whose local store (holding its abandoned
// epoch) catches up to B's committed state.
func TestTaskMovesBetweenProcesses(t *testing.T) {
	brokers := kafkatest.Builtin(t, "unused", 1)
	ctx := context.Background()
	open := func() *Durable {
		d, err := Open(ctx, Options{DataDir: t.TempDir(), Pipeline: "moving", Logger: quietLogger(),
			Kafka: []kgo.Opt{kgo.SeedBrokers(brokers...)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	a, b := open(), open()
	sink := map[engine.Task]uint64{} // committed epochs
	committed := func(task engine.Task) uint64 { return sink[task] }
	model := map[engine.Task]map[string]string{0: {}, 1: {}}

	// run begins a batch on d, applies puts (value "" = delete) to task,
	// prepares it at the tasks' next epochs and, if commit, commits it for
	// tasks.
	run := func(d *Durable, tasks []engine.Task, task engine.Task, puts map[string]string, commit bool) {
		t.Helper()
		bctx, batch := d.Begin(ctx)
		v := ViewFrom(bctx)
		for k, val := range puts {
			var err error
			if val == "" {
				err = v.Delete(task, "count", []byte(k))
			} else {
				err = v.Put(task, "count", []byte(k), []byte(val))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := batch.Prepare(ctx, func(tk engine.Task) uint64 { return sink[tk] + 1 }); err != nil {
			t.Fatal(err)
		}
		if !commit {
			return
		}
		for _, tk := range tasks {
			sink[tk]++
		}
		for k, val := range puts {
			if val == "" {
				delete(model[task], k)
			} else {
				model[task][k] = val
			}
		}
		batch.Committed()
	}
	check := func(d *Durable, task engine.Task) {
		t.Helper()
		bctx, _ := d.Begin(ctx)
		got := map[string]string{}
		if err := ViewFrom(bctx).Scan(task, "count", nil, nil, func(k, v []byte) bool {
			got[string(k)] = string(v)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		d.Discard()
		if !maps.Equal(got, model[task]) {
			t.Fatalf("task %d at epoch %d: got %v, want %v", task, sink[task], got, model[task])
		}
	}
	restore := func(d *Durable, tasks []engine.Task) {
		t.Helper()
		d.Discard()
		if err := d.Restore(ctx, tasks, committed); err != nil {
			t.Fatal(err)
		}
	}

	restore(a, []engine.Task{0, 1})
	for i := range 3 {
		run(a, []engine.Task{0, 1}, 0, map[string]string{fmt.Sprint("w", i): fmt.Sprint(i)}, true)
		run(a, []engine.Task{0, 1}, 1, map[string]string{"apple": fmt.Sprint(i), fmt.Sprint("pear", i): "1"}, true)
	}
	// A prepares a round the sink never commits (its commit is fenced: the
	// group moved task 1 to B).
	run(a, []engine.Task{0, 1}, 1, map[string]string{"apple": "lost", "pear0": "", "plum": "lost"}, false)

	restore(a, []engine.Task{0})
	check(a, 0)
	restore(b, []engine.Task{1})
	check(b, 1)
	if sz := b.Sizes()[1]; sz.Keys != int64(len(model[1])) {
		t.Fatalf("B's task 1 has %d keys by Sizes, want %d", sz.Keys, len(model[1]))
	}

	// B commits epochs of its own, then task 1 moves back to A.
	run(b, []engine.Task{1}, 1, map[string]string{"apple": "b", "pear1": ""}, true)
	run(b, []engine.Task{1}, 1, map[string]string{"kiwi": "b"}, true)
	restore(b, []engine.Task{})
	restore(a, []engine.Task{0, 1})
	check(a, 0)
	check(a, 1)
}
