// Package builtin holds the plugins shipped inside the sluice binary:
// uppercase, filter, extract and split. They still run as subprocesses: the
// host re-executes its own binary with EnvName set, and MaybeServe, called
// first thing in main, turns that process into the plugin. So a pipeline
// can say `plugin: uppercase` with no build step, and a bug in a built-in
// is isolated exactly like one in a third-party plugin.
package builtin
