// Package sinks holds Sluice's sinks, one sub-package each, and the
// conformance suite every sink passes.
package sinks
