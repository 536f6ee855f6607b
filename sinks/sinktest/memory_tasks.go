package sinktest

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sinks/internal/commit"
)

// OpenTasks returns the checkpoints of tasks and drops anything staged. It
// implements engine.TaskSink.
func (s *MemorySink) OpenTasks(ctx context.Context, pipeline string, tasks []engine.Task) (map[engine.Task]engine.Checkpoint, error) {
	s.drop()
	s.pipeline = pipeline
	s.fence = commit.Fence{Sink: "memory sink", Pipeline: pipeline, Where: "memory",
		Advice: "another process took the task over; the pipeline starts again from the sink"}
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	c := s.m.pipelines[pipeline]
	out := map[engine.Task]engine.Checkpoint{}
	for _, t := range tasks {
		if cp := c.checkpoint(t); cp.Epoch > 0 {
			out[t] = cp
		}
	}
	return out, nil
}

// checkpoint is task t's checkpoint, or the one derived from the
// pipeline's single chain (zero if neither exists). c may be nil.
func (c *memCommitted) checkpoint(t engine.Task) engine.Checkpoint {
	switch {
	case c == nil:
		return engine.Checkpoint{}
	case c.tasks != nil && c.tasks[t].Epoch > 0:
		return engine.Checkpoint{Epoch: c.tasks[t].Epoch, At: c.tasks[t].At.Clone()}
	}
	return engine.Checkpoint{Epoch: c.epoch, At: c.at.OfTask(t)}
}

// CommitTasks makes round's staged output visible with the tasks'
// checkpoints, each on top of its previous epoch. It implements
// engine.TaskSink.
func (s *MemorySink) CommitTasks(ctx context.Context, round uint64, cps map[engine.Task]engine.Checkpoint) error {
	if s.pipeline == "" {
		return errors.New("memory sink: CommitTasks before OpenTasks")
	}
	if err := s.staged.CheckCommit(round); err != nil {
		return err
	}
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	c := s.m.entryLocked(s.pipeline)
	switch v, t := commit.CheckTasks(cps, c.checkpoint); v {
	case commit.Done:
		s.drop()
		return nil
	case commit.Fenced:
		return s.fence.Error(cps[t].Epoch, fmt.Sprintf("memory holds epoch %d of task %d", c.checkpoint(t).Epoch, t))
	}
	if c.tasks == nil {
		c.tasks = map[engine.Task]engine.Checkpoint{}
	}
	for t, cp := range cps {
		c.tasks[t] = engine.Checkpoint{Epoch: cp.Epoch, At: cp.At.Clone()}
	}
	c.output = append(c.output, s.output...)
	c.dead = append(c.dead, s.dead...)
	s.drop()
	return nil
}
