//go:build !linux

package sdk

// startGuard: without a parent-death signal, the parent watch ends the
// plugin, and the host's kill of the plugin's group on a stop is what ends
// its children.
func startGuard() {}
