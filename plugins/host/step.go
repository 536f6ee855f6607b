package host

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/plugins/builtin"
	"github.com/sluicehq/sluice/plugins/sdk"
)

// Step is a plugin item of a pipeline file's transforms: the step a Host
// runs. Config is what New takes: this with the pipeline's name, logger
// and metrics added.
type Step struct {
	// Plugin is a built-in plugin name or a path to an executable.
	Plugin   string         `yaml:"plugin" required:"true" example:"uppercase" doc:"a built-in name, or a path relative to the pipeline file"`
	Settings map[string]any `yaml:"settings"`
	// The max tags repeat MaxWorkers, MaxTimeout and MaxMemory, the min tag
	// MinMemory (a test keeps them equal).
	Workers int                `yaml:"workers" default:"1" min:"1" max:"64" doc:"plugin processes"`
	SHA256  string             `yaml:"sha256" doc:"of a plugin executable; refused for a built-in"`
	Timeout pipelines.Duration `yaml:"timeout" default:"30s" max:"1h" doc:"per call"`
	Memory  pipelines.ByteSize `yaml:"memory" min:"128MiB" max:"1TiB" doc:"per plugin process and each process it starts (RLIMIT_DATA, Linux); absent: no limit"`
	State   bool               `yaml:"state" doc:"the plugin keeps keyed state (sdk.State), committed with the output; needs delivery: exactly-once"`
}

// Stateful implements pipelines.StatefulConfig: a plugin step keeps state
// when it says state: true.
func (s *Step) Stateful() bool { return s.State }

var sha256RE = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// IsBuiltinName reports whether plugin is written as a built-in's name (no
// path separator) rather than as the path of an executable.
func IsBuiltinName(plugin string) bool { return !strings.ContainsAny(plugin, `/\`) }

// Validate checks what run would refuse at start: a built-in name that
// does not exist, settings a built-in does not take (or of the wrong type,
// or that its own Configure rejects), sha256 on a built-in, a plugin path
// that is a folder or not executable. A path with nothing there yet is a
// warning: the plugin may be built before the pipeline runs.
func (s *Step) Validate(c *pipelines.Check) {
	if !c.OK("plugin") {
		return
	}
	plugin := strings.TrimSpace(s.Plugin)
	if plugin == "" {
		c.Errorf("plugin", "%s is empty; write a built-in plugin name (%s) or the path of a plugin executable", c.Path("plugin"), strings.Join(builtin.Names(), ", "))
		return
	}
	if c.OK("memory") && s.Memory > 0 && !memoryLimitSupported {
		c.Errorf("memory", "%s: %v", c.Path("memory"), errMemoryLinuxOnly)
	}
	if c.OK("sha256") && s.SHA256 != "" && !sha256RE.MatchString(s.SHA256) {
		c.Errorf("sha256", "%s must be 64 hex characters, got %d characters %q; write the output of sha256sum PLUGIN, or remove the key", c.Path("sha256"), len(s.SHA256), s.SHA256)
	}
	if IsBuiltinName(plugin) {
		s.validateBuiltin(c, plugin)
		return
	}
	s.validatePath(c, plugin)
}

func (s *Step) validateBuiltin(c *pipelines.Check, name string) {
	typ, ok := builtin.SettingsOf(name)
	if !ok {
		mean := ""
		if m := pipelines.Suggest(name, builtin.Names()); m != "" {
			mean = fmt.Sprintf("did you mean %q? ", m)
		}
		c.Errorf("plugin", "plugin %q is not a built-in; %sbuilt-ins are %s; for a plugin executable write its path, e.g. plugin: ./%s", name, mean, strings.Join(builtin.Names(), ", "), name)
		return
	}
	if s.SHA256 != "" && c.OK("sha256") {
		c.KeyErrorf("sha256", "sha256 checks a plugin executable, and %q is built into sluice; remove sha256", name)
	}
	if s.State && c.OK("state") {
		c.KeyErrorf("state", "the built-in %q keeps no state; remove state: true (it is for plugin executables that use sdk.State)", name)
	}
	if !c.OK("settings") || !checkSettings(c, name, typ, s.Settings) {
		return
	}
	// The tags passed; the plugin's own Configure, run in-process, checks
	// the rest (an expression that does not compile, unwrap with two
	// fields) exactly as the plugin process would at start.
	t, _ := builtin.Lookup(name)
	if _, err := sdk.Local(context.Background(), t, c.Path(""), s.Settings); err != nil {
		key := "settings"
		if !c.Written("settings", s.Settings != nil) {
			key = "plugin"
		}
		msg, _, _ := strings.Cut(err.Error(), "\n") // expr's errors add a drawing of the spot
		c.Errorf(key, "%s", msg)
	}
}

// checkSettings checks a built-in's settings against its struct: known
// keys, value types, allowed values, required keys. It reports whether all
// passed.
func checkSettings(c *pipelines.Check, name string, typ reflect.Type, settings map[string]any) bool {
	list := builtin.SettingsList(typ)
	keys := make([]string, len(list))
	for i, st := range list {
		keys[i] = st.Key
	}
	ok := true
	given := make([]string, 0, len(settings))
	for k := range settings {
		given = append(given, k)
	}
	slices.Sort(given)
	for _, k := range given {
		at := "settings." + k
		i := slices.Index(keys, k)
		if i < 0 {
			ok = false
			if len(keys) == 0 {
				c.KeyErrorf(at, "the %s plugin takes no settings; remove %s", name, c.Path(at))
				continue
			}
			mean := ""
			if m := pipelines.Suggest(k, keys); m != "" {
				mean = fmt.Sprintf("did you mean %q? ", m)
			}
			c.KeyErrorf(at, "unknown setting %q for the %s plugin; %sits settings are %s", k, name, mean, strings.Join(keys, ", "))
			continue
		}
		st := list[i]
		v := settings[k]
		if v == nil {
			continue // "key:" with no value: the default
		}
		if want, good := typeMatches(st.Type, v); !good {
			ok = false
			c.Errorf(at, "%s is %s; the %s plugin wants %s, e.g. %s: %s", c.Path(at), describeValue(v), name, want, k, sampleOf(st))
			continue
		}
		if s, isString := v.(string); isString && st.Enum != nil && !slices.Contains(st.Enum, s) {
			ok = false
			c.Errorf(at, "bad value %q for %s; write one of: %s", s, c.Path(at), strings.Join(st.Enum, ", "))
		}
	}
	for _, st := range list {
		if st.Required && settings[st.Key] == nil {
			ok = false
			key := "settings"
			if settings == nil {
				key = "plugin"
			}
			c.Errorf(key, "the %s plugin needs settings.%s; write settings: {%s: %s}", name, st.Key, st.Key, sampleOf(st))
		}
	}
	return ok
}

// typeMatches reports whether a decoded YAML value fits a settings field of
// type t, and how to name t in a message.
func typeMatches(t reflect.Type, v any) (string, bool) {
	switch t.Kind() {
	case reflect.String:
		_, ok := v.(string)
		return "a string", ok
	case reflect.Bool:
		_, ok := v.(bool)
		return "true or false", ok
	case reflect.Int, reflect.Int64, reflect.Int32:
		_, ok := v.(int)
		return "a whole number", ok
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			return "a list", false
		}
		if t.Elem().Kind() == reflect.String {
			for _, e := range l {
				if _, isString := e.(string); !isString {
					return "a list of strings", false
				}
			}
		}
		return "a list", true
	}
	return "", true // the plugin's Configure checks what the tags cannot
}

func describeValue(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "true or false"
	case int, uint64, float64:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

func sampleOf(st builtin.Setting) string {
	switch {
	case st.Example != "":
		return st.Example
	case st.Enum != nil:
		return st.Enum[0]
	}
	switch st.Type.Kind() {
	case reflect.Bool:
		return "true"
	case reflect.Slice:
		return "[a, b]"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "1"
	}
	return "text"
}

// validatePath checks a plugin executable named by its path, relative to
// the pipeline file's folder as run resolves it.
func (s *Step) validatePath(c *pipelines.Check, plugin string) {
	path := c.Resolve(plugin)
	st, err := os.Stat(path)
	switch {
	case err != nil:
		c.Warnf("plugin", "plugin %s: no file at %s yet; build the plugin to that path before running (go build -o %s ./path/to/plugin), or fix the path: it is relative to the pipeline file's folder", plugin, path, path)
		return
	case st.IsDir():
		hint := "give the path of the built plugin binary"
		if inner, err := os.Stat(filepath.Join(path, filepath.Base(path))); err == nil && !inner.IsDir() {
			hint = fmt.Sprintf("write plugin: %s/%s (the binary inside it)", strings.TrimRight(plugin, "/"), filepath.Base(path))
		}
		c.Errorf("plugin", "plugin %s is a folder; %s", plugin, hint)
		return
	case st.Mode()&0o111 == 0:
		c.Errorf("plugin", "plugin %s is not executable; build it with go build, or chmod +x %s", plugin, path)
		return
	}
	if s.SHA256 != "" && c.OK("sha256") && sha256RE.MatchString(s.SHA256) {
		if got := fileSHA256(path); !strings.EqualFold(got, s.SHA256) {
			if _, err := hex.DecodeString(got); err == nil {
				c.Warnf("sha256", "%s does not match %s (its sha256 is %s); run refuses a mismatch: write the new sum if the plugin was rebuilt on purpose", c.Path("sha256"), plugin, got)
			}
		}
	}
}
