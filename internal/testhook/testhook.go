// Package testhook holds the points where a test of a whole binary (a
// `sluice run` started by cmd/sluice's tests) can stop the process at a
// chosen step, to freeze or kill it there. Every hook is nil, and costs a
// nil check, in any binary but a test's.
package testhook

// BeforeCommit, when set, runs in the engine just before the sink commits
// a batch (after it was written).
var BeforeCommit func()
