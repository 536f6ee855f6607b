// Package file is the exactly-once file sink: each committed epoch becomes
// visible as a part file in one directory, together with the source positions
// it was read up to.
//
// Layout under the sink's path (several pipelines may share it):
//
//	part-<pipeline>-<epoch, 20 digits>.jsonl   visible output (.txt for raw)
//	_sluice/<pipeline>/<epoch, 20 digits>.json  checkpoints: epoch, positions, commit marker
//	_sluice/<pipeline>/.lock                    serialises commits of one pipeline
//	_sluice/<pipeline>/.stage-<id>              staged, not yet visible output
//	_dead-letters/<pipeline>/dead-<epoch>.jsonl rejected records, committed with their epoch
//
// Dead letters (engine.DeadLetterSink) are jsonl records with the reason,
// plugin and source position in sluice.* headers; SetDeadLetterDir moves them
// to a folder of the user's choice on the same file system.
//
// Readers take every file under the path whose name starts with neither '.'
// nor '_' (the Hadoop and Spark convention), so staging files and checkpoints
// are never read as output.
//
// Commit of epoch e, in this order: flush and fsync the staging file; write the
// checkpoint to a temporary file, fsync, rename to <e>.json and fsync its
// directory; rename the staging file to its part name and fsync the output
// directory. The part rename is the commit point: a checkpoint whose part file
// is not there belongs to an epoch that never committed, and Open deletes it.
// An epoch without output has no part file; its checkpoint rename is then the
// commit point. So after a crash between any two system calls, epoch e is
// either visible with its positions, or absent with epoch e-1 the last one
// stored, and Open tells which from the directory alone.
//
// Rolling: by default every epoch with output is one part file. With
// Roll.Bytes or Roll.Interval set, epochs are appended to one staging file that
// becomes visible when it reaches the size or age; each epoch in between still
// commits (its checkpoint records the staging file's committed length), so
// output is exactly-once but appears with the delay the roll asks for.
package file
