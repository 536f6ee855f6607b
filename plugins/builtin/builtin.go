package builtin

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/plugins/sdk"
)

// EnvName is the environment variable that puts the sluice binary in plugin
// mode: its value is the built-in plugin to serve.
const EnvName = "SLUICE_BUILTIN_PLUGIN"

// registry maps each built-in's name to a constructor, so every process
// gets a fresh Transform, and to its settings struct.
var registry = map[string]entry{
	"uppercase": {Uppercase, struct{}{}},
	"filter":    {Filter, FilterSettings{}},
	"extract":   {Extract, ExtractSettings{}},
	"split":     {Split, SplitSettings{}},
}

// entry is one built-in. settings is the zero value of the struct its
// settings decode into: its json tags name the keys; required, default,
// enum, example and doc tags declare what `sluice lint` checks and
// `sluice plugin list` shows.
type entry struct {
	new      func() sdk.Transform
	settings any
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
	e, ok := registry[name]
	if !ok {
		return nil, false
	}
	return e.new(), true
}

// SettingsOf returns the type of the built-in's settings struct (a struct
// with no fields for one that takes none).
func SettingsOf(name string) (reflect.Type, bool) {
	e, ok := registry[name]
	if !ok {
		return nil, false
	}
	return reflect.TypeOf(e.settings), true
}

// Setting is one key of a built-in's settings, as its struct declares it.
type Setting struct {
	Key      string
	Type     reflect.Type
	Required bool
	Default  string   // "" when the zero value is the default
	Enum     []string // accepted values of a string, if limited
	Example  string   // what to write, for messages
	Doc      string
}

// SettingsList lists the keys of a settings struct type in declaration
// order.
func SettingsList(t reflect.Type) []Setting {
	var out []Setting
	for f := range t.Fields() {
		key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || key == "-" {
			continue
		}
		if key == "" {
			key = f.Name
		}
		s := Setting{Key: key, Type: f.Type, Required: f.Tag.Get("required") == "true",
			Default: f.Tag.Get("default"), Example: f.Tag.Get("example"), Doc: f.Tag.Get("doc")}
		if e := f.Tag.Get("enum"); e != "" {
			s.Enum = strings.Split(e, "|")
		}
		out = append(out, s)
	}
	return out
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
