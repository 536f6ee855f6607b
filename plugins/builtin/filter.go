package builtin

import (
	"errors"
	"fmt"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/sluicehq/sluice/plugins/sdk"
)

// FilterSettings configures the filter plugin.
type FilterSettings struct {
	// Expr is an expr-lang expression (https://expr-lang.org) that must
	// yield a bool; records for which it is true are kept. It sees key,
	// value (strings), headers (a map of strings), topic, partition and
	// offset; fromJSON(value) parses a JSON value.
	Expr string `json:"expr" required:"true" example:"'value contains \"error\"'" doc:"expr-lang expression yielding a bool; true keeps the record"`
}

// filterEnv is what a filter expression sees.
type filterEnv struct {
	Key       string            `expr:"key"`
	Value     string            `expr:"value"`
	Headers   map[string]string `expr:"headers"`
	Topic     string            `expr:"topic"`
	Partition int32             `expr:"partition"`
	Offset    int64             `expr:"offset"`
}

// Filter keeps the records for which settings.expr is true. A record on
// which the expression fails (say, fromJSON on a value that is not JSON)
// is rejected with the evaluation error as the reason.
func Filter() sdk.Transform {
	return sdk.WithSettings(func(s FilterSettings) (sdk.Transform, error) {
		if s.Expr == "" {
			return nil, errors.New(`expr is required, e.g. expr: 'value contains "error"'`)
		}
		prog, err := expr.Compile(s.Expr, expr.Env(filterEnv{}), expr.AsBool())
		if err != nil {
			return nil, fmt.Errorf("expr: %w", err)
		}
		var machine vm.VM // reused: a process serves one call at a time
		return sdk.Filter(func(r sdk.Record) (bool, error) {
			env := filterEnv{
				Key: string(r.Key), Value: string(r.Value),
				Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
			}
			if len(r.Headers) > 0 {
				env.Headers = make(map[string]string, len(r.Headers))
				for _, h := range r.Headers {
					env.Headers[h.Key] = string(h.Value)
				}
			}
			out, err := machine.Run(prog, env)
			if err != nil {
				return false, fmt.Errorf("filter expression: %w", err)
			}
			return out.(bool), nil
		}), nil
	})
}
