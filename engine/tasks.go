package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// Tasks split one pipeline over several processes (docs/ARCHITECTURE.md
// §11). A task is a partition number: task p reads partition p of every
// topic of the pipeline. Each task has its own epoch chain in the sink, so
// it can move from one process to another; a process commits all the tasks
// it runs in one atomic sink step per batch (a round), each task guarded by
// its own expected epoch.

// Task is one partition number of a pipeline's input.
type Task int32

// String returns the task's number, as metrics label it.
func (t Task) String() string { return strconv.Itoa(int(t)) }

// TaskOf returns the task that reads tp.
func TaskOf(tp TopicPartition) Task { return Task(tp.Partition) }

// OfTask returns the positions of p that belong to task t.
func (p Positions) OfTask(t Task) Positions {
	out := Positions{}
	for tp, off := range p {
		if TaskOf(tp) == t {
			out[tp] = off
		}
	}
	return out
}

// Checkpoint is what a sink stores for one task: its last committed epoch
// and the positions its next batch starts at.
type Checkpoint struct {
	Epoch uint64
	At    Positions
}

// TaskSink is the optional capability of a sink that keeps one epoch chain
// per task, so that the tasks of one pipeline can run in several processes
// and move between them. Write and Abort take the round (the batch's
// number in this process, counted from 1 after every OpenTasks) as the
// identity of what is staged.
type TaskSink interface {
	Sink
	// OpenTasks returns the committed checkpoint of each of tasks that has
	// one (a task missing from the map starts at the pipeline's start
	// policy) and discards whatever this instance staged. A sink that holds
	// a pipeline's single-chain state from before tasks (Open/Commit)
	// returns, for a task with no checkpoint of its own, that state's epoch
	// and its positions of the task. ctx bounds only the opening; OpenTasks
	// may be called again, with other tasks, after a failure or a new
	// assignment.
	OpenTasks(ctx context.Context, pipeline string, tasks []Task) (map[Task]Checkpoint, error)
	// CommitTasks makes the output staged for round visible and stores each
	// task's checkpoint, atomically: it succeeds only if, for every task,
	// the stored epoch (or the derived one OpenTasks returned) is the
	// checkpoint's epoch - 1; otherwise nothing becomes visible and the
	// error wraps ErrFenced (another process committed the task since).
	// Committing checkpoints that are all already stored is a no-op (a
	// retry after a lost acknowledgement).
	CommitTasks(ctx context.Context, round uint64, tasks map[Task]Checkpoint) error
}

// TaskSource is the optional capability of a source that reads only some
// tasks' partitions. The engine calls OpenTasks instead of Open when the
// pipeline has an Assigner.
type TaskSource interface {
	Source
	// OpenTasks is Open restricted to the partitions of tasks: from holds
	// the committed positions of those of them that have any; the others
	// start at the pipeline's start policy.
	OpenTasks(ctx context.Context, tasks []Task, from Positions) error
}

// Assigner tells a process which tasks of its pipeline it runs: for a
// Kafka source, the partitions a consumer group assigned it.
type Assigner interface {
	// Assigned waits until the process holds an assignment and returns its
	// tasks, sorted; there may be none (more processes than tasks).
	// Calling it again also says the engine has let go of the tasks the
	// previous call returned that are no longer assigned (their batch in
	// flight committed or was aborted), which a revocation waits for.
	Assigned(ctx context.Context) ([]Task, error)
	// Changed is closed once the assignment differs from what Assigned
	// last returned. The engine then finishes the batch in flight and calls
	// Assigned again.
	Changed() <-chan struct{}
}

// taskChains is the engine's view of the tasks it runs: their checkpoints
// as of OpenTasks. The protocol numbers rounds from 0 at every open, so
// task t's epoch in round r is base[t].Epoch + r.
type taskChains struct {
	tasks []Task
	base  map[Task]Checkpoint
}

func newTaskChains(tasks []Task, base map[Task]Checkpoint) *taskChains {
	if base == nil {
		base = map[Task]Checkpoint{}
	}
	return &taskChains{tasks: slices.Clone(tasks), base: base}
}

// at returns where the tasks resume: every position of every task.
func (c *taskChains) at() Positions {
	at := Positions{}
	for _, t := range c.tasks {
		maps.Copy(at, c.base[t].At.OfTask(t))
	}
	return at
}

// checkpoints returns what round r, ending at until, commits for each task.
func (c *taskChains) checkpoints(r uint64, until Positions) map[Task]Checkpoint {
	out := make(map[Task]Checkpoint, len(c.tasks))
	for _, t := range c.tasks {
		out[t] = Checkpoint{Epoch: c.base[t].Epoch + r, At: until.OfTask(t)}
	}
	return out
}

// check refuses a sink's answer that names tasks it was not asked about.
func (c *taskChains) check() error {
	for t := range c.base {
		if !slices.Contains(c.tasks, t) {
			return fmt.Errorf("engine: sink returned a checkpoint of task %d, which was not asked for", t)
		}
	}
	return nil
}
