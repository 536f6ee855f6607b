package sdk

import (
	"io"

	"github.com/hashicorp/go-hclog"
	"os"
)

// hclogQuiet is go-plugin's own server-side logger: it only reports its
// internal errors, in the JSON form the host parses.
func hclogQuiet() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "go-plugin",
		Level:      hclog.Warn,
		Output:     stderr(),
		JSONFormat: true,
	})
}

func stderr() io.Writer { return os.Stderr }
