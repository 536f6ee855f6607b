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
// Local runs the same Transform in-process, for tests and benchmarks.
package sdk
