package builtin

import "github.com/sluicehq/sluice/plugins/sdk"

func Filter() sdk.Transform  { return Uppercase() }
func Extract() sdk.Transform { return Uppercase() }
func Split() sdk.Transform   { return Uppercase() }
