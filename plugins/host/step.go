package host

import (
	"regexp"
	"strings"

	"github.com/sluicehq/sluice/pipelines"
)

// Step is a plugin item of a pipeline file's transforms: the step a Host
// runs. Config is what New takes: this with the pipeline's name, logger
// and metrics added.
type Step struct {
	// Plugin is a built-in plugin name or a path to an executable.
	Plugin   string         `yaml:"plugin" required:"true" example:"jsonpath"`
	Settings map[string]any `yaml:"settings"`
	// The max tags repeat MaxWorkers, MaxTimeout and MaxMemory, the min tag
	// MinMemory (a test keeps them equal).
	Workers int                `yaml:"workers" default:"1" min:"1" max:"64" doc:"plugin processes"`
	SHA256  string             `yaml:"sha256"`
	Timeout pipelines.Duration `yaml:"timeout" default:"30s" max:"1h" doc:"per call"`
	Memory  pipelines.ByteSize `yaml:"memory" min:"128MiB" max:"1TiB" doc:"per plugin process and each process it starts (RLIMIT_DATA, Linux); absent: no limit"`
}

var sha256RE = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// Validate checks the plugin name and the checksum's form.
func (s *Step) Validate(c *pipelines.Check) {
	if c.OK("plugin") && strings.TrimSpace(s.Plugin) == "" {
		c.Errorf("plugin", "%s is empty; write a built-in plugin name or the path of a plugin executable, e.g. plugin: jsonpath", c.Path("plugin"))
	}
	if c.OK("sha256") && s.SHA256 != "" && !sha256RE.MatchString(s.SHA256) {
		c.Errorf("sha256", "%s must be 64 hex characters, got %d characters %q; write the output of sha256sum PLUGIN, or remove the key", c.Path("sha256"), len(s.SHA256), s.SHA256)
	}
}
