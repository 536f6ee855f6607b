package sdk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
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

// State keeps a count per key that survives restarts and crashes: the
// host stores it with the batch's output, exactly once (the step needs
// `state: true`). State is per task, a task being the record's partition.
// Prefetch reads the batch's keys in one round trip per task; Gets are
// then answered in the plugin. Local keeps the state in memory.
func ExampleState() {
	counter := sdk.Batch(func(ctx context.Context, in []sdk.Record) ([]sdk.Record, []sdk.Rejected, error) {
		st := sdk.State(ctx)
		keys := map[int32][]string{}
		for _, r := range in {
			keys[r.Partition] = append(keys[r.Partition], string(r.Key))
		}
		for task, ks := range keys {
			if err := st.Prefetch(task, ks...); err != nil {
				return nil, nil, err
			}
		}
		out := make([]sdk.Record, 0, len(in))
		for _, r := range in {
			ts := st.Task(r.Partition)
			v, _, err := ts.Get(string(r.Key))
			if err != nil {
				return nil, nil, err
			}
			n, _ := strconv.Atoi(string(v))
			n++
			// Read back by the next Get of this key, in this batch too.
			if err := ts.Put(string(r.Key), strconv.AppendInt(nil, int64(n), 10)); err != nil {
				return nil, nil, err
			}
			r.Value = fmt.Appendf(nil, "%s=%d", r.Key, n)
			out = append(out, r)
		}
		return out, nil, nil
	})

	local, _ := sdk.Local(context.Background(), counter, "count", nil)
	for _, batch := range [][]sdk.Record{
		{{Key: []byte("a")}, {Key: []byte("b")}, {Key: []byte("a")}},
		{{Key: []byte("a")}, {Key: []byte("a"), Partition: 1}},
	} {
		out, _, _ := local.Process(context.Background(), batch)
		var counts []string
		for _, r := range out {
			counts = append(counts, string(r.Value))
		}
		fmt.Println(strings.Join(counts, " "))
	}
	// Output:
	// a=1 b=1 a=2
	// a=3 a=1
}
