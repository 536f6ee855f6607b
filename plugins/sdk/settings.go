package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Settings is what a plugin process learns about its step.
type Settings struct {
	// Raw is the step's `settings:` map as a JSON object ("{}" if absent).
	Raw      json.RawMessage
	Pipeline string
	Step     string // the step's name in logs, metrics and rejected records
	Worker   int    // which of the step's worker processes this is, from 0
}

// Decode decodes the settings into v, a pointer to a struct whose fields
// carry `json` tags. Unknown keys and wrong types are errors that name the
// key and say what is accepted.
func (s Settings) Decode(v any) error {
	raw := s.Raw
	if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("settings: %s is %s, want %s", te.Field, te.Value, typeName(te.Type))
	}
	if key, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Errorf("settings: unknown key %s; known keys: %s", key, strings.Join(knownKeys(v), ", "))
	}
	return fmt.Errorf("settings: %w", err)
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a map"
	}
	return t.String()
}

func knownKeys(v any) []string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		keys = append(keys, name)
	}
	sort.Strings(keys)
	return keys
}

// WithSettings makes a Transform whose settings are decoded into S (a
// struct with `json` tags) and handed to build, which returns the Transform
// that does the work. build's error is reported as a settings error.
func WithSettings[S any](build func(S) (Transform, error)) Transform {
	return &configured[S]{build: build}
}

type configured[S any] struct {
	build func(S) (Transform, error)
	t     Transform
}

func (c *configured[S]) Configure(ctx context.Context, s Settings) error {
	var v S
	if err := s.Decode(&v); err != nil {
		return err
	}
	t, err := c.build(v)
	if err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	if cf, ok := t.(Configurer); ok {
		if err := cf.Configure(ctx, s); err != nil {
			return err
		}
	}
	c.t = t
	return nil
}

func (c *configured[S]) Process(ctx context.Context, in []Record) ([]Record, []Rejected, error) {
	if c.t == nil {
		return nil, nil, errors.New("plugin used before Configure")
	}
	return c.t.Process(ctx, in)
}

func (c *configured[S]) recordWise() bool {
	rw, ok := c.t.(recordWise)
	return ok && rw.recordWise()
}
