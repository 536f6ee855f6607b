package builtin

import (
	"bytes"

	"github.com/sluicehq/sluice/plugins/sdk"
)

// Uppercase upper-cases each record's value (UTF-8 aware). It takes no
// settings; any given are an error.
func Uppercase() sdk.Transform {
	return sdk.WithSettings(func(struct{}) (sdk.Transform, error) {
		return sdk.Map(func(r sdk.Record) (sdk.Record, error) {
			r.Value = bytes.ToUpper(r.Value)
			return r, nil
		}), nil
	})
}
