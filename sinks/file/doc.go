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
package file
