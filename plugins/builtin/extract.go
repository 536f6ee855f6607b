package builtin

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/plugins/sdk"
)

// ExtractSettings configures the extract plugin.
type ExtractSettings struct {
	// Fields are dot-separated paths into the JSON value ("user.id"; a
	// number picks a list element: "items.0.sku").
	Fields []string `json:"fields" required:"true" example:"[user.id, event]" doc:"dot-separated paths into the JSON value"`
	// Unwrap, with exactly one field, makes the value that field itself
	// (a string without its quotes) instead of an object holding it.
	Unwrap bool `json:"unwrap" doc:"with one field: the value is that field itself"`
	// Key, if set, is a path whose value becomes the record key (strings
	// without quotes), e.g. to partition downstream by user.
	Key string `json:"key" example:"user.id" doc:"a path whose value becomes the record key"`
	// Missing says what to do when a field is absent: "reject" (default:
	// the record goes to the dead-letter destination) or "null".
	Missing string `json:"missing" default:"reject" enum:"reject|null" doc:"an absent field rejects the record, or reads as null"`
}

// Extract replaces each JSON value with an object of the chosen fields,
// keyed by their paths: {"user.id": 42, "event": "click"}. A value that is
// not JSON is rejected.
func Extract() sdk.Transform {
	return sdk.WithSettings(func(s ExtractSettings) (sdk.Transform, error) {
		if len(s.Fields) == 0 {
			return nil, errors.New("fields is required: a list of paths such as [user.id, event]")
		}
		if s.Unwrap && len(s.Fields) != 1 {
			return nil, fmt.Errorf("unwrap needs exactly one field, got %d", len(s.Fields))
		}
		switch s.Missing {
		case "":
			s.Missing = "reject"
		case "reject", "null":
		default:
			return nil, fmt.Errorf("missing: %q is not reject or null", s.Missing)
		}
		paths := make([][]string, len(s.Fields))
		for i, f := range s.Fields {
			if f == "" {
				return nil, fmt.Errorf("fields[%d] is empty", i)
			}
			paths[i] = strings.Split(f, ".")
		}
		var keyPath []string
		if s.Key != "" {
			keyPath = strings.Split(s.Key, ".")
		}
		return sdk.Map(func(r sdk.Record) (sdk.Record, error) {
			var doc any
			if err := json.Unmarshal(r.Value, &doc); err != nil {
				return r, fmt.Errorf("value is not JSON: %v", err)
			}
			picked := make(map[string]any, len(paths))
			for i, p := range paths {
				v, ok := lookup(doc, p)
				if !ok && s.Missing == "reject" {
					return r, fmt.Errorf("field %s is missing", s.Fields[i])
				}
				picked[s.Fields[i]] = v
			}
			var out any = picked
			if s.Unwrap {
				out = picked[s.Fields[0]]
			}
			val, err := marshalUnquoted(out)
			if err != nil {
				return r, err
			}
			if keyPath != nil {
				k, ok := lookup(doc, keyPath)
				if !ok {
					return r, fmt.Errorf("key field %s is missing", s.Key)
				}
				if r.Key, err = marshalUnquoted(k); err != nil {
					return r, err
				}
			}
			r.Value = val
			return r, nil
		}), nil
	})
}

// lookup walks path through maps and lists.
func lookup(doc any, path []string) (any, bool) {
	for _, p := range path {
		switch v := doc.(type) {
		case map[string]any:
			next, ok := v[p]
			if !ok {
				return nil, false
			}
			doc = next
		case []any:
			var i int
			if _, err := fmt.Sscanf(p, "%d", &i); err != nil || i < 0 || i >= len(v) || fmt.Sprint(i) != p {
				return nil, false
			}
			doc = v[i]
		default:
			return nil, false
		}
	}
	return doc, true
}

// marshalUnquoted encodes v as JSON, except that a string is its bare text.
func marshalUnquoted(v any) ([]byte, error) {
	if s, ok := v.(string); ok {
		return []byte(s), nil
	}
	return json.Marshal(v)
}
