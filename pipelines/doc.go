// Package pipelines is the pipeline spec: the Go types of a version 1
// pipeline file, strict YAML loading with FILE:LINE:COL errors, environment
// interpolation, defaults and validation (lint).
//
// Load and Parse walk the YAML node tree against the spec structs, whose
// tags (yaml, default, required, enum, min) are the single declaration of
// the format: they drive decoding, lint messages and the Reference used for
// documentation. Every problem in a file is reported in one run as an
// Errors value, one "FILE:LINE:COL: what is wrong; what to write instead"
// line each. ${VAR} and ${VAR:-default} are expanded in values, $$ is a
// literal dollar.
//
// The blocks under source, sink and transforms belong to component kinds:
// each kind's block type lives in its own package, and a table of kinds
// (Kinds; sluice's is internal/components.Builtin) tells the loader which
// keys name which block type and what each kind can do (Caps), so rules
// that span blocks, such as exactly-once needing a transactional sink,
// read capabilities rather than kind names. Each block's Validate adds the
// rules between its own keys, reported through Check at their place.
package pipelines
