// Package sources holds Sluice's sources, one sub-package each: kafka
// (direct and receiver ingestion), generate (deterministic test and
// benchmark data) and file.
package sources
