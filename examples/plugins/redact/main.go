// Command redact is an example third-party transform plugin: it replaces
// every match of a regular expression in record values (by default, e-mail
// addresses). Build it and point a pipeline at the binary:
//
//	go build -o examples/plugins/bin/redact ./examples/plugins/redact
//	sluice run examples/plugins/redact.yaml
package main

import (
	"fmt"
	"regexp"

	"github.com/sluicehq/sluice/plugins/sdk"
)

type settings struct {
	Pattern     string `json:"pattern"`
	Replacement string `json:"replacement"`
}

const defaultPattern = `[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`

func newTransform() sdk.Transform {
	return sdk.WithSettings(func(s settings) (sdk.Transform, error) {
		if s.Pattern == "" {
			s.Pattern = defaultPattern
		}
		if s.Replacement == "" {
			s.Replacement = "[redacted]"
		}
		re, err := regexp.Compile(s.Pattern)
		if err != nil {
			return nil, fmt.Errorf("pattern: %w", err)
		}
		repl := []byte(s.Replacement)
		return sdk.Map(func(r sdk.Record) (sdk.Record, error) {
			r.Value = re.ReplaceAll(r.Value, repl)
			return r, nil
		}), nil
	})
}

func main() {
	sdk.Serve(newTransform())
}
