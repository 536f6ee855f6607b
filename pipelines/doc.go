// Package pipelines is the pipeline spec: the Go types of a version 1
// pipeline file, strict YAML loading with FILE:LINE:COL errors, environment
// interpolation, defaults and validation (lint).
package pipelines
