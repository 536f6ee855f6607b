package sdk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/plugins/sdk"
)

// A plugin that upper-cases values. In a real plugin, main is just
// sdk.Serve(t); here the transform runs in-process through sdk.Local.
func Example() {
	t := sdk.Map(func(r sdk.Record) (sdk.Record, error) {
		r.Value = bytes.ToUpper(r.Value)
		return r, nil
	})
	// func main() { sdk.Serve(t) }

	local, _ := sdk.Local(context.Background(), t, "upper", nil)
	out, _, _ := local.Process(context.Background(), []sdk.Record{{Value: []byte("hello")}})
	fmt.Println(string(out[0].Value))
	// Output: HELLO
}

// Typed settings: the pipeline's `settings:` map is decoded into a struct;
// unknown keys and wrong types are errors the user sees at start-up.
func ExampleWithSettings() {
	type settings struct {
		Suffix string `json:"suffix"`
	}
	t := sdk.WithSettings(func(s settings) (sdk.Transform, error) {
		if s.Suffix == "" {
			return nil, errors.New("suffix is required")
		}
		return sdk.Map(func(r sdk.Record) (sdk.Record, error) {
			r.Value = append(r.Value, s.Suffix...)
			return r, nil
		}), nil
	})

	_, err := sdk.Local(context.Background(), t, "suffix", map[string]any{"sufix": "!"})
	fmt.Println(err)

	local, _ := sdk.Local(context.Background(), t, "suffix", map[string]any{"suffix": "!"})
	out, _, _ := local.Process(context.Background(), []sdk.Record{{Value: []byte("hi")}})
	fmt.Println(string(out[0].Value))
	// Output:
	// suffix: settings: unknown key "sufix"; known keys: suffix
	// hi!
}

// A per-record error rejects the record: it goes to the pipeline's
// dead-letter destination with the reason.
func ExampleFilter() {
	t := sdk.Filter(func(r sdk.Record) (bool, error) {
		if !bytes.HasPrefix(r.Value, []byte("{")) {
			return false, errors.New("not a JSON object")
		}
		return bytes.Contains(r.Value, []byte(`"ok":true`)), nil
	})
	local, _ := sdk.Local(context.Background(), t, "only-ok", nil)
	out, rejected, _ := local.Process(context.Background(), []sdk.Record{
		{Value: []byte(`{"ok":true}`)}, {Value: []byte(`{"ok":false}`)}, {Value: []byte(`oops`)},
	})
	fmt.Println(len(out), "kept;", rejected[0].Plugin, "rejected", string(rejected[0].Record.Value)+":", rejected[0].Reason)
	// Output: 1 kept; only-ok rejected oops: not a JSON object
}

// FlatMap emits zero or more records per input.
func ExampleFlatMap() {
	t := sdk.FlatMap(func(r sdk.Record) ([]sdk.Record, error) {
		var out []sdk.Record
		for _, w := range strings.Fields(string(r.Value)) {
			r.Value = []byte(w)
			out = append(out, r)
		}
		return out, nil
	})
	local, _ := sdk.Local(context.Background(), t, "words", nil)
	out, _, _ := local.Process(context.Background(), []sdk.Record{{Value: []byte("to be or")}})
	for _, r := range out {
		fmt.Print(string(r.Value), ";")
	}
	fmt.Println()
	// Output: to;be;or;
}

// Batch sees the whole batch, for transforms that look across records.
func ExampleBatch() {
	dedup := sdk.Batch(func(_ context.Context, in []sdk.Record) ([]sdk.Record, []sdk.Rejected, error) {
		seen := map[string]bool{}
		var out []sdk.Record
		for _, r := range in {
			if !seen[string(r.Key)] {
				seen[string(r.Key)] = true
				out = append(out, r)
			}
		}
		return out, nil, nil
	})
	local, _ := sdk.Local(context.Background(), dedup, "dedup", nil)
	out, _, _ := local.Process(context.Background(), []sdk.Record{{Key: []byte("a")}, {Key: []byte("a")}, {Key: []byte("b")}})
	fmt.Println(len(out))
	// Output: 2
}
