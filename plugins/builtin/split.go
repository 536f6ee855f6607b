package builtin

import (
	"bytes"

	"github.com/sluicehq/sluice/plugins/sdk"
)

// SplitSettings configures the split plugin.
type SplitSettings struct {
	// Delimiter separates the pieces; empty (the default) splits on runs of
	// white space, giving one record per word.
	Delimiter string `json:"delimiter" example:"\",\"" doc:"separator; absent: runs of white space"`
	// KeepEmpty keeps empty pieces (only with a delimiter: "a,,b").
	KeepEmpty bool `json:"keep-empty" doc:"keep empty pieces (with a delimiter)"`
}

// Split is a flat-map: each record becomes one record per piece of its
// value, keeping the key, headers and source position.
func Split() sdk.Transform {
	return sdk.WithSettings(func(s SplitSettings) (sdk.Transform, error) {
		delim := []byte(s.Delimiter)
		return sdk.FlatMap(func(r sdk.Record) ([]sdk.Record, error) {
			var pieces [][]byte
			if len(delim) == 0 {
				pieces = bytes.Fields(r.Value)
			} else {
				pieces = bytes.Split(r.Value, delim)
			}
			out := make([]sdk.Record, 0, len(pieces))
			for _, p := range pieces {
				if len(p) == 0 && !s.KeepEmpty {
					continue
				}
				c := r
				c.Value = p
				out = append(out, c)
			}
			return out, nil
		}), nil
	})
}
