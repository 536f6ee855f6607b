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
//	_sluice/<pipeline>/tasks/slot-<id>-0, slot-<id>-1   an instance's checkpoints of rounds that did not roll
//	_sluice/<pipeline>/tasks/.stage-<id>                an instance's open part file, or staged output
//	part-<pipeline>-<epoch>-t<task>.jsonl               visible output (.txt for raw)
//	_dead-letters/<pipeline>/dead-<epoch>-t<task>.jsonl a round's dead letters
//
// (epoch 20 digits, task 5.) Files are named by a round's lowest task and
// that task's new epoch: a task's epoch commits once, so only one round of
// one process can ever take the name. Staging and slot names carry an
// instance id drawn at every OpenTasks. A task's checkpoint is the newest
// of the committed records and the instances' slots holding it; a task
// that none holds starts from the chain's last checkpoint (its epoch, its
// positions of the task). The first OpenTasks marks that checkpoint as
// split (Tasks), rolling its open part file as seal does: from then on a
// process still committing the chain is fenced, and Open refuses the
// pipeline.
//
// Task mode rolls as the chain does, per instance (taskslot.go): each
// instance appends its rounds to its own open part file. Commit of a
// round: fsync the staging file; take the .lock; read the records and
// slots and check that every task's stored epoch is its new one - 1
// (commit.CheckTasks), or write nothing (ErrFenced). Then, for a round
// that does not roll (the common case): if the round starts the open
// file, fsync tasks/ so its name lasts; overwrite the instance's slot
// round%2 in place with every task the instance committed, the open
// file's committed length and the name it takes when sealed (this
// round's), and fsync it: the commit point, two fsyncs per round. The
// output is committed but hidden until the roll. A round that rolls (the
// file reached Roll.Bytes or Roll.Interval, always with Roll.PerEpoch) or
// has dead letters instead renames the dead letters into place; writes
// the record (temporary file, fsync, rename, fsync of tasks/); renames the
// staging file to its part file, the commit point; fsyncs the output
// directory. Without output the record's rename is the commit point.
//
// After a crash or failure between any two steps, a record whose part file
// is missing while its staging file is there did not commit: the next
// OpenTasks deletes it (durably) before anything touches the staging file,
// and a torn slot fails its checksum, leaving the slot before. So each
// task is at its old or its new epoch, all of a round's tasks alike. An
// open file missing from tasks/ was rolled or sealed. Sealing renames an
// open file, cut to its slot's committed length, to the slot's seal name:
// Close and the idle roller seal the instance's own; OpenTasks seals those
// of instances that let go of theirs (dead: its flock is free; a live
// instance, a zombie too, holds it), so a killed instance's committed
// output stays hidden until another opens. A record is deleted once each
// of its tasks has a newer checkpoint and its dead letters are gone, a
// dead instance's slots once that holds for their tasks and their open
// file is gone.
//
// The lock is held for the commit step only, so it serialises the
// processes' commits, not their writes or the fsync of their output; a
// zombie (a process whose task moved) checks under it and finds the newer
// epoch, so nothing of its round is committed or visible; its Close seals
// only its committed rounds. A process stopped while it holds the lock
// (SIGSTOP mid-commit) holds up every commit and OpenTasks of the pipeline
// until it continues, finishing a commit that was valid when checked, or
// dies.
//
// What the file system must guarantee to processes sharing it: rename
// within a directory is atomic; fsync of a file, and of a directory, makes
// its content and names durable; flock is exclusive between all clients
// (NFSv4 with locking, not mounted nolock or with local_lock); and the
// lock's holder sees every name and every fsynced byte an earlier holder
// made (NFS: mount with actimeo=0,lookupcache=none, or a stale cached
// listing or slot hides a round).
// A client that loses its lock without knowing (a lease that expired
// while it was cut off from the server) can commit beside the new holder:
// the epoch check is only as good as the lock. On platforms without flock
// OpenTasks refuses.
package file
