// Package file is the exactly-once file sink: committed epochs become visible
// as part files in one directory, together with the source positions they
// were read up to.
//
// Layout under the sink's path (several pipelines may share it):
//
//	part-<pipeline>-<epoch, 20 digits>.jsonl   visible output (.txt for raw)
//	_sluice/<pipeline>/<epoch, 20 digits>.json  checkpoints: epoch, positions, commit marker
//	_sluice/<pipeline>/slot-0, slot-1           checkpoints of epochs appended to an open part file
//	_sluice/<pipeline>/.lock                    serialises commits of one pipeline
//	_sluice/<pipeline>/.stage-<id>              staged output, and committed output not rolled yet
//	_dead-letters/<pipeline>/dead-<epoch>.jsonl rejected records, committed with their epoch
//
// Dead letters (engine.DeadLetterSink) are jsonl records with the reason,
// plugin and source position in sluice.* headers; New's deadLetterDir moves them
// to a folder of the user's choice on the same file system.
//
// Readers take every file under the path whose name starts with neither '.'
// nor '_' (the Hadoop and Spark convention), so staging files and checkpoints
// are never read as output.
//
// Rolling. By default (DefaultRoll) epochs are appended to one staging file,
// the open part file, which becomes visible, rolls, at the first commit that
// finds it holding Roll.Bytes (128 MiB) or Roll.Interval (1 minute) old, and
// is then named by that commit's epoch. Each epoch in between commits: its
// checkpoint holds its positions and the committed length of the open part
// file, so output is exactly-once but appears up to a roll later. A source
// with nothing new makes no commits, so an idle roller seals an open part
// file that reaches Roll.Interval while no epoch is staged, and Close seals
// it when the pipeline stops; a killed process leaves it committed but
// hidden, and the next Open carries it on. Roll.PerEpoch instead makes every
// epoch with output its own part file, visible at its commit.
//
// Commit of epoch e, in this order: flush and fsync the staging file; store
// the checkpoint; if the part file rolls (always, per epoch), rename the
// staging file to its part name and fsync the output directory. The part
// rename is the commit point of an epoch that rolls: a checkpoint whose part
// file is not there belongs to an epoch that never committed, and Open
// deletes it. For an epoch that rolls nothing the checkpoint is the commit
// point. So after a crash between any two system calls, epoch e is either
// committed with its positions, or absent with epoch e-1 the last one
// stored, and Open tells which from the directory alone.
//
// A checkpoint is stored in one of two ways. An epoch that names a file the
// previous checkpoint did not (a part file to rename, or a new open part
// file) writes <e>.json: a temporary file, fsync, rename, fsync of the
// directory, which also makes the new staging file's name durable. An epoch
// appended to the open part file the previous one was appended to, the
// common case, overwrites slot e%2 in place and fsyncs it: its files exist
// from Open on, so no directory fsync is needed, and the slot of e-1 stays
// intact while e's is written; a checksum tells a torn slot (see slot.go).
// Such a commit costs two fsyncs, the open part file's and the slot's.
//
// Sealing (seal) rolls the open part file without an epoch: it rewrites the
// last epoch's checkpoint file to name the part (marked Sealed), then
// renames. Positions stay as they are, so the engine's view of what is
// committed does not change; a crash between the two steps is finished by
// Open.
//
// Tasks (engine.TaskSink, tasks.go). A pipeline split into tasks is run by
// several processes, on one machine or on several sharing the directory;
// each commits the tasks it runs in rounds, all or none. Besides the
// single chain's files:
//
//	_sluice/<pipeline>/tasks/<epoch>-t<task>.json       round records: each task's new epoch and positions
//	_sluice/<pipeline>/tasks/.stage-<id>                staged output of a round
//	part-<pipeline>-<epoch>-t<task>.jsonl               a round's output (.txt for raw)
//	_dead-letters/<pipeline>/dead-<epoch>-t<task>.jsonl its dead letters
//
// (epoch 20 digits, task 5.) A round's files are named by its lowest task
// and that task's new epoch: a task's epoch commits once, so only one
// round of one process can ever take the name. Staging names carry an
// instance id drawn at every OpenTasks. A task's checkpoint is in the
// newest committed record holding it; a task that none holds starts from
// the chain's last checkpoint (its epoch, its positions of the task). The
// first OpenTasks marks that checkpoint as split (Tasks), rolling its open
// part file as seal does: from then on a process still committing the
// chain is fenced, and Open refuses the pipeline.
//
// Commit of a round: fsync the staging file; take the .lock; read the
// records and check that every task's stored epoch is its new one - 1
// (commit.CheckTasks), or write nothing (ErrFenced); rename the dead
// letters into place; write the record (temporary file, fsync, rename,
// fsync of tasks/, which also makes the staging file's name durable);
// rename the staging file to its part file, the commit point; fsync the
// output directory. Without output the record's rename is the commit
// point. Four fsyncs per round with output, two without, two more with
// dead letters, whatever the number of tasks. After a crash or failure
// between any two steps, a record whose part file is missing while its
// staging file is there did not commit: it is ignored, and the next
// OpenTasks deletes it (durably) before the staging file, so each task is
// at its old or its new epoch, all of a round's tasks alike, and the
// output is visible exactly when they moved. A record is deleted once
// each of its tasks has a newer one and its dead letters are gone.
//
// The lock is held for the commit step only, so it serialises the
// processes' commits, not their writes or the fsync of their output; a
// zombie (a process whose task moved) checks under it and finds the newer
// epoch. A process stopped while it holds the lock (SIGSTOP mid-commit)
// holds up every commit and OpenTasks of the pipeline until it continues,
// finishing a commit that was valid when checked, or dies. Task mode does
// not roll: every round with output is its own part file.
//
// What the file system must guarantee to processes sharing it: rename
// within a directory is atomic; fsync of a file, and of a directory, makes
// its content and names durable; flock is exclusive between all clients
// (NFSv4 with locking, not mounted nolock or with local_lock); and the
// lock's holder sees every name an earlier holder made (NFS: mount with
// actimeo=0,lookupcache=none, or a stale cached listing hides a round).
// A client that loses its lock without knowing (a lease that expired
// while it was cut off from the server) can commit beside the new holder:
// the epoch check is only as good as the lock. On platforms without flock
// OpenTasks refuses.
package file
