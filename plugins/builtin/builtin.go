package builtin

import (
	"fmt"
	"os"
	"sort"

	"github.com/sluicehq/sluice/plugins/sdk"
)

// EnvName is the environment variable that puts the sluice binary in plugin
// mode: its value is the built-in plugin to serve.
const EnvName = "SLUICE_BUILTIN_PLUGIN"

// registry maps each built-in's name to a constructor, so every process
// gets a fresh Transform.
var registry = map[string]func() sdk.Transform{
	"uppercase": Uppercase,
	"filter":    Filter,
	"extract":   Extract,
	"split":     Split,
}

// Names lists the built-in plugins, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup returns a new instance of the built-in called name.
func Lookup(name string) (sdk.Transform, bool) {
	f, ok := registry[name]
	if !ok {
		return nil, false
	}
	return f(), true
}

// MaybeServe serves a built-in plugin and exits if this process was started
// as one (EnvName is set); otherwise it returns at once. Call it at the very
// start of main, before flags are parsed.
func MaybeServe() {
	name, ok := os.LookupEnv(EnvName)
	if !ok {
		return
	}
	t, found := Lookup(name)
	if !found {
		fmt.Fprintf(os.Stderr, "sluice: %s=%q names no built-in plugin; built-ins are %v\n", EnvName, name, Names())
		os.Exit(1)
	}
	sdk.Serve(t)
	os.Exit(0)
}
