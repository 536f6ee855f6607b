// Package postgres is the exactly-once PostgreSQL sink: a batch's rows and
// the pipeline's checkpoint row commit in one transaction.
//
// Staging: the first Write of an epoch begins a transaction and COPYs the
// rows straight into the target table (in upsert mode into a temporary table
// dropped at commit); later Writes of the epoch COPY more. Uncommitted rows
// are invisible to every other session, Abort is a ROLLBACK, and the sink
// holds no rows in memory, so batch size is bounded by the server, not by
// this process. The price is one open transaction from the first Write to
// Commit, which is the batch's own duration.
//
// The COPY is in PostgreSQL's binary format, encoded by the sink itself
// (copy.go) a 64 KiB chunk at a time as the connection sends it, without
// an []any per row or pgx's encode-plan lookup per value. A table with a
// column type the sink does not encode (a key into uuid, say) keeps pgx's
// CopyFrom and its conversions; Open logs which column.
//
// Commit of epoch e runs, in that transaction,
//
//	UPDATE sluice_checkpoints SET epoch = e, positions = $until
//	WHERE pipeline = $p AND epoch = e-1
//
// (an INSERT for e = 1) and commits only if it changed one row. The update
// takes the checkpoint row's lock, so two writers of one pipeline serialise
// there and the second finds the epoch moved: engine.ErrFenced, rolled back.
// If the row already holds e with the same positions, the commit was a retry
// after a lost acknowledgement and is a no-op. In upsert mode the staged rows
// are then merged with INSERT ... ON CONFLICT (upsert-key) DO UPDATE, the
// last record of a key within the batch winning.
//
// A pipeline split into tasks (engine.TaskSink, tasks.go) keeps one row per
// task in sluice_task_checkpoints(pipeline, task, epoch, positions jsonb),
// primary key (pipeline, task), created by OpenTasks. A task without a row
// starts from the pipeline's sluice_checkpoints row: its epoch and its
// positions of the task. CommitTasks writes every task's row in the round's
// transaction with one INSERT ... ON CONFLICT DO UPDATE, in task order, each
// row only on top of its epoch - 1 (a first row only if the single-chain row
// still holds that epoch, and the primary key stops a second process
// inserting it too); if fewer rows than tasks were written the round rolls
// back, and is a no-op if every checkpoint was already stored, fenced
// otherwise. Processes lock checkpoint rows in one order, so they do not
// deadlock; a deadlock error all the same (a trigger on the target, say) is
// retryable. A round costs that statement and COMMIT, whatever the number
// of tasks (plus the merge in upsert mode).
//
// The checkpoint tables sluice_checkpoints(pipeline, epoch, positions jsonb)
// and sluice_task_checkpoints and the dead-letter table sluice_dead_letters
// live in the target table's schema; several pipelines may share them.
package postgres
