// Command crashonce is a test plugin: it passes records through, except
// that the first process to see offset 500 of any partition creates the
// marker file and exits, as a crashing plugin would.
package main

import (
	"os"

	"github.com/sluicehq/sluice/plugins/sdk"
)

type settings struct {
	Marker string `json:"marker"`
}

func main() {
	sdk.Serve(sdk.WithSettings(func(s settings) (sdk.Transform, error) {
		return sdk.Map(func(r sdk.Record) (sdk.Record, error) {
			if r.Offset == 500 {
				if _, err := os.Stat(s.Marker); err != nil {
					_ = os.WriteFile(s.Marker, nil, 0o600)
					os.Exit(3)
				}
			}
			return r, nil
		}), nil
	}))
}
