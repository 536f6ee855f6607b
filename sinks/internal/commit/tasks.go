package commit

import (
	"slices"

	"github.com/sluicehq/sluice/engine"
)

// CheckTasks decides a commit of several tasks' checkpoints (one round of
// a pipeline split into tasks) over what stored returns for each task: its
// checkpoint, or the one OpenTasks derived for it. The round goes ahead
// (Next) only if every task does, is Done only if every task is; anything
// else, a mix included, is Fenced, and task names the first task that is
// not Next (in task order).
func CheckTasks(cps map[engine.Task]engine.Checkpoint, stored func(engine.Task) engine.Checkpoint) (v Verdict, task engine.Task) {
	tasks := make([]engine.Task, 0, len(cps))
	for t := range cps {
		tasks = append(tasks, t)
	}
	slices.Sort(tasks)
	done, next := 0, 0
	first := engine.Task(-1)
	for _, t := range tasks {
		have := stored(t)
		switch Check(cps[t].Epoch, cps[t].At, have.Epoch, have.At) {
		case Next:
			next++
			continue
		case Done:
			done++
		}
		if first < 0 {
			first = t
		}
	}
	switch {
	case next == len(tasks):
		return Next, 0
	case done == len(tasks):
		return Done, 0
	}
	return Fenced, first
}
