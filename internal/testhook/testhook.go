// Package testhook holds the points where a test of a whole binary (a
// `sluice run` started by cmd/sluice's tests) can stop the process at a
// chosen step, to freeze or kill it there. Every hook is nil, and costs a
// nil check, in any binary but a test's.
package testhook

// BeforeCommit, when set, runs in the engine just before the sink commits
// a batch (after it was written).
var BeforeCommit func()

// CleanerStep, when set, runs at each commit step of a log clean in the
// broker's storage (its name: "cleaned", "manifest", "checkpoint",
// "remove FILE", "rename FILE"), before the clean goes on.
var CleanerStep func(step string)
