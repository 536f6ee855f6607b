// Package sinktest is the conformance suite every exactly-once sink passes
// (the sink contract is ARCHITECTURE §3 and §4). A sink's test calls Run with a function that makes a fresh
// destination per subtest: a temporary directory, a new table. The suite then
// drives several sink instances against it the way the engine and crashes
// would, and checks the visible output and the stored epoch and positions.
//
// What it checks: commit contiguity (epoch e needs e-1 stored); fencing (a
// stale writer gets engine.ErrFenced and changes nothing); idempotent
// re-commit of the stored epoch; crash before and after commit (no loss, no
// duplicates); Abort leaves nothing visible; reopen returns the last epoch
// and positions; epochs without records; pipelines sharing a destination are
// isolated; the sink does not keep the caller's record slices; and, for sinks
// that implement engine.DeadLetterSink, dead letters commit with their epoch.
//
// Two kinds of fencing pass it: by contiguity (whoever commits epoch e
// first wins; file, postgres) and by opening (the newest Open wins, as a
// Kafka transactional id does). The suite only opens writers in orders
// where both agree: a writer opened later commits, an older one is fenced.
//
// Memory is a destination in memory whose sinks follow the same rules
// (sinks/internal/commit); the suite is checked against it, and tests of
// code above the sinks can run pipelines into it.
package sinktest
