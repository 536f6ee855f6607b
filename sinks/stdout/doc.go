// Package stdout is the at-least-once sink that prints records, one line
// each, to the process's standard output (or any io.Writer). It has no
// transactions: Commit flushes, and output written before a crash is printed
// again when the batch is replayed. Lint rejects it with exactly-once.
package stdout
