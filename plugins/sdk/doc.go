// Package sdk is what a transform plugin author imports. A plugin is a
// program whose main is
//
//	func main() { sdk.Serve(sdk.Map(upper)) }
//
// Serve speaks the plugin protocol to the Sluice host that started the
// process; Map, Filter, FlatMap and Batch turn plain functions into a
// Transform; WithSettings decodes the pipeline's `settings:` block into a
// typed struct. A per-record error rejects that record (it goes to the
// pipeline's dead-letter destination); FailBatch fails the whole batch.
//
// State(ctx) is the keyed state of a step with `state: true`: per task (a
// record's Partition), kept by the host and committed with the batch's
// output, so a plugin that counts, deduplicates or sessionizes through it
// counts each record once across crashes and restarts (see Store).
//
// Local runs the same Transform in-process, for tests and benchmarks, with
// the keyed state in memory.
//
// On Linux, Serve also starts a guard: the plugin binary again (recognised
// in this package's init, before the plugin's own code runs), in the
// plugin's process group, which kills that group when the plugin dies. So
// processes a plugin starts end with it, even when the host was killed by
// SIGKILL and took the plugin along through its parent-death signal; a
// plugin need not do anything for its children. A plugin not built with
// this SDK must give its children a parent-death signal itself
// (PR_SET_PDEATHSIG), or they outlive a killed host.
package sdk
