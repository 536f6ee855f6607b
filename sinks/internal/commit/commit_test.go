package commit

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/engine"
)

func TestStaged(t *testing.T) {
	s := Staged{Sink: "test sink"}
	if err := s.CheckWrite(3); err != nil {
		t.Fatalf("CheckWrite with nothing staged = %v", err)
	}
	if err := s.CheckCommit(3); err != nil {
		t.Fatalf("CheckCommit with nothing staged = %v", err)
	}
	s.Epoch = 3
	if err := s.CheckWrite(3); err != nil {
		t.Fatalf("CheckWrite of the staged epoch = %v", err)
	}
	if err := s.CheckCommit(3); err != nil {
		t.Fatalf("CheckCommit of the staged epoch = %v", err)
	}
	err := s.CheckWrite(4)
	if err == nil || !strings.HasPrefix(err.Error(), "test sink: epoch 3 is staged and not committed") {
		t.Errorf("CheckWrite(4) with 3 staged = %v", err)
	}
	err = s.CheckCommit(2)
	if err == nil || !strings.HasPrefix(err.Error(), "test sink: commit of epoch 2 while epoch 3 is staged") {
		t.Errorf("CheckCommit(2) with 3 staged = %v", err)
	}
	if errors.Is(err, engine.ErrFenced) {
		t.Errorf("a staging mistake is the caller's, not a fence: %v", err)
	}
}

func TestCheck(t *testing.T) {
	at := func(n int64) engine.Positions { return engine.Positions{{Topic: "t"}: n} }
	for _, tc := range []struct {
		name          string
		epoch, stored uint64
		until, have   engine.Positions
		want          Verdict
	}{
		{"first epoch on an empty store", 1, 0, at(5), nil, Next},
		{"next epoch", 4, 3, at(5), at(4), Next},
		{"re-commit with the same positions", 3, 3, at(4), at(4), Done},
		{"re-commit with other positions", 3, 3, at(9), at(4), Fenced},
		{"a gap", 5, 3, at(9), at(4), Fenced},
		{"behind the store", 2, 3, at(2), at(4), Fenced},
		{"empty positions both times", 1, 1, nil, engine.Positions{}, Done},
	} {
		if got := Check(tc.epoch, tc.until, tc.stored, tc.have); got != tc.want {
			t.Errorf("%s: Check(%d over %d) = %v, want %v", tc.name, tc.epoch, tc.stored, got, tc.want)
		}
	}
}

func TestFence(t *testing.T) {
	f := Fence{Sink: "test sink", Pipeline: "p", Where: "/out", Advice: "run one instance"}
	err := f.Error(5, "the directory holds epoch 7")
	if !errors.Is(err, engine.ErrFenced) {
		t.Fatalf("%v does not wrap engine.ErrFenced", err)
	}
	want := `test sink: ` + engine.ErrFenced.Error() + `: pipeline "p" in /out: commit of epoch 5 needs epoch 4 stored, the directory holds epoch 7; run one instance`
	if err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
}

func TestCheckTasks(t *testing.T) {
	at := func(o int64) engine.Positions { return engine.Positions{{Topic: "t", Partition: 0}: o} }
	stored := map[engine.Task]engine.Checkpoint{0: {Epoch: 4, At: at(40)}, 1: {Epoch: 7, At: at(70)}}
	get := func(t engine.Task) engine.Checkpoint { return stored[t] }
	cases := []struct {
		name string
		cps  map[engine.Task]engine.Checkpoint
		want Verdict
		task engine.Task
	}{
		{"all next", map[engine.Task]engine.Checkpoint{0: {Epoch: 5, At: at(50)}, 1: {Epoch: 8, At: at(80)}, 2: {Epoch: 1, At: at(1)}}, Next, 0},
		{"all done", map[engine.Task]engine.Checkpoint{0: {Epoch: 4, At: at(40)}, 1: {Epoch: 7, At: at(70)}}, Done, 0},
		{"one done, one next", map[engine.Task]engine.Checkpoint{0: {Epoch: 4, At: at(40)}, 1: {Epoch: 8, At: at(80)}}, Fenced, 0},
		{"one behind", map[engine.Task]engine.Checkpoint{0: {Epoch: 5, At: at(50)}, 1: {Epoch: 7, At: at(71)}}, Fenced, 1},
		{"one ahead", map[engine.Task]engine.Checkpoint{0: {Epoch: 5, At: at(50)}, 1: {Epoch: 9, At: at(90)}}, Fenced, 1},
	}
	for _, c := range cases {
		if v, task := CheckTasks(c.cps, get); v != c.want || v == Fenced && task != c.task {
			t.Errorf("%s: %v (task %d), want %v (task %d)", c.name, v, task, c.want, c.task)
		}
	}
}
