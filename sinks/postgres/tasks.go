package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sinks/internal/commit"
)

// A pipeline split into tasks (engine.TaskSink) keeps one row per task in
// sluice_task_checkpoints, keyed by (pipeline, task). A round's output and
// every task's row commit in one transaction, as an epoch's do: staging is
// the same, so what a round stages lives only in this instance's
// transaction (and, in upsert mode, its session's temporary table) and
// cannot meet another process's or another open's round of the same
// number.

// OpenTasks connects (or reconnects), creates the tables (the task
// checkpoint table too) and returns the committed checkpoint of each of
// tasks: its own row or, for a task without one, the pipeline's
// single-chain row (from Open and Commit) with its positions of the task; a
// task with neither is missing. It rolls back whatever was staged. ctx
// bounds only this call.
func (s *Sink) OpenTasks(ctx context.Context, pipeline string, tasks []engine.Task) (map[engine.Task]engine.Checkpoint, error) {
	s.rollback()
	s.pipeline, s.tasks = pipeline, true
	s.fence = commit.Fence{Sink: "postgres sink", Pipeline: pipeline, Where: s.ident(taskTable),
		Advice: "another process took the task over; the pipeline starts again from the sink"}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	if err := s.ensureTables(ctx, true); err != nil {
		return nil, s.classify(err, "prepare tables")
	}
	cps, err := s.taskCheckpoints(ctx, tasks)
	if err != nil {
		return nil, s.classify(err, "read task checkpoints")
	}
	return cps, nil
}

// taskCheckpoints reads the checkpoints of tasks as OpenTasks returns
// them, the task rows and the single-chain row in one snapshot.
func (s *Sink) taskCheckpoints(ctx context.Context, tasks []engine.Task) (map[engine.Task]engine.Checkpoint, error) {
	ids := make([]int32, len(tasks))
	for i, t := range tasks {
		ids[i] = int32(t)
	}
	rows, err := s.conn.Query(ctx, fmt.Sprintf(`SELECT task, epoch, positions FROM %s WHERE pipeline = $1 AND task = ANY($2)
		UNION ALL SELECT NULL, epoch, positions FROM %s WHERE pipeline = $1`, s.ident(taskTable), s.ident(checkpointTable)),
		s.pipeline, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	own := map[engine.Task]engine.Checkpoint{}
	var single engine.Checkpoint
	for rows.Next() {
		var task *int32 // NULL: the single-chain row
		var epoch int64
		var raw []byte
		if err := rows.Scan(&task, &epoch, &raw); err != nil {
			return nil, err
		}
		var at engine.Positions
		if err := json.Unmarshal(raw, &at); err != nil {
			if task == nil {
				return nil, fmt.Errorf("checkpoint of pipeline %q in %s holds positions that do not decode (%w); restore the row", s.pipeline, s.ident(checkpointTable), err)
			}
			return nil, fmt.Errorf("checkpoint of task %d of pipeline %q in %s holds positions that do not decode (%w); restore the row", *task, s.pipeline, s.ident(taskTable), err)
		}
		cp := engine.Checkpoint{Epoch: uint64(epoch), At: at}
		if task == nil {
			single = cp
		} else {
			own[engine.Task(*task)] = cp
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make(map[engine.Task]engine.Checkpoint, len(tasks))
	for _, t := range tasks {
		if cp, ok := own[t]; ok {
			out[t] = cp
		} else if single.Epoch > 0 {
			out[t] = engine.Checkpoint{Epoch: single.Epoch, At: single.At.OfTask(t)}
		}
	}
	return out, nil
}

// CommitTasks stores every task's checkpoint, each guarded by its previous
// epoch, and commits round's transaction: one statement for all the tasks,
// then COMMIT (in upsert mode the merge between them). If any task's guard
// fails, nothing commits; the round is a no-op if every checkpoint is
// already stored (a lost acknowledgement), and fenced otherwise.
func (s *Sink) CommitTasks(ctx context.Context, round uint64, cps map[engine.Task]engine.Checkpoint) error {
	if !s.tasks {
		return errors.New("postgres sink: CommitTasks before OpenTasks")
	}
	if err := s.staged.CheckCommit(round); err != nil {
		return err
	}
	tasks := slices.Sorted(maps.Keys(cps))
	ids := make([]int32, len(tasks))
	epochs := make([]int64, len(tasks))
	positions := make([]string, len(tasks))
	for i, t := range tasks {
		if cps[t].Epoch == 0 {
			return fmt.Errorf("postgres sink: checkpoint of task %d has epoch 0; epochs start at 1", t)
		}
		b, err := json.Marshal(cps[t].At)
		if err != nil {
			return fmt.Errorf("postgres sink: encode positions of task %d: %w", t, err)
		}
		ids[i], epochs[i], positions[i] = int32(t), int64(cps[t].Epoch), string(b)
	}
	if err := s.begin(ctx, round); err != nil {
		return err
	}
	tag, err := s.tx.Exec(ctx, s.taskGuardSQL(), s.pipeline, ids, epochs, positions)
	if err != nil {
		return s.fail(err, "store task checkpoints")
	}
	if tag.RowsAffected() != int64(len(tasks)) {
		// Read what is stored only after the rollback: inside the
		// transaction this round's own rows would pass for stored.
		s.rollback()
		return s.refused(ctx, round, tasks, cps)
	}
	return s.finish(ctx, fmt.Sprintf("round %d", round))
}

// taskGuardSQL stores checkpoints $2 (tasks), $3 (epochs) and $4
// (positions) of pipeline $1, each only on top of the epoch before it. A
// task's row is updated if it holds epoch-1. A task without a row is
// inserted if the epoch it derives from the single-chain row (0 without
// one) is epoch-1; if another process inserted the row meanwhile, the
// primary key makes it a conflict, whose update finds the other's epoch and
// does nothing. The count of rows written is the count of guards passed.
//
// Rows are written in task order: a process whose tasks overlap another's
// then waits for rows in the same order, so two rounds cannot deadlock on
// checkpoints (all taken before the upsert merge, which goes in key order).
func (s *Sink) taskGuardSQL() string {
	return fmt.Sprintf(`INSERT INTO %[1]s AS c (pipeline, task, epoch, positions)
		SELECT $1, w.task, w.epoch, w.positions::jsonb
		FROM unnest($2::integer[], $3::bigint[], $4::text[]) AS w(task, epoch, positions)
		WHERE EXISTS (SELECT 1 FROM %[1]s o WHERE o.pipeline = $1 AND o.task = w.task)
			OR w.epoch - 1 = coalesce((SELECT epoch FROM %[2]s WHERE pipeline = $1), 0)
		ORDER BY w.task
		ON CONFLICT (pipeline, task) DO UPDATE
			SET epoch = EXCLUDED.epoch, positions = EXCLUDED.positions, committed_at = now()
			WHERE c.epoch = EXCLUDED.epoch - 1`, s.ident(taskTable), s.ident(checkpointTable))
}

// refused decides a round whose guard failed for some task, over what is
// stored now: nil if every checkpoint is, an error wrapping ErrFenced
// otherwise.
func (s *Sink) refused(ctx context.Context, round uint64, tasks []engine.Task, cps map[engine.Task]engine.Checkpoint) error {
	stored, err := s.taskCheckpoints(ctx, tasks)
	if err != nil {
		return s.classify(err, "read task checkpoints")
	}
	v, t := commit.CheckTasks(cps, func(t engine.Task) engine.Checkpoint { return stored[t] })
	switch v {
	case commit.Done:
		return nil
	case commit.Fenced:
		return s.fence.Error(cps[t].Epoch, fmt.Sprintf("task %d is at epoch %d", t, stored[t].Epoch))
	}
	// Every guard would pass now: a checkpoint moved back while the round
	// committed, which only an edit of the table does.
	return fmt.Errorf("postgres sink: %w: pipeline %q in %s: round %d: the task checkpoints changed during the commit; do not edit them while the pipeline runs",
		engine.ErrFenced, s.pipeline, s.ident(taskTable), round)
}
