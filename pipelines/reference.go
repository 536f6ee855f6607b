package pipelines

import (
	"fmt"
	"io"
	"reflect"
	"strings"
)

// Key describes one YAML key for the reference documentation.
type Key struct {
	Name     string
	Type     string // "string", "integer", "duration", "list of strings", "block", ...
	Default  string // "" when there is none
	Required bool
	Values   []string // the accepted values, when the key is an enumeration
	Min      string   // the smallest accepted value, or ""
	Max      string   // the largest accepted value, or ""
	Doc      string   // what the default means or how the key is used, or ""
	Path     bool     // a file or folder, relative to the pipeline file's folder
}

// Block is one YAML block ("" is the top level, then "source.kafka",
// "transforms[]", ...) and its keys.
type Block struct {
	Path string
	Keys []Key
}

// Reference lists every block of a version 1 pipeline with its keys, the
// blocks of every kind in the table included, from the same struct tags
// the loader enforces, so documentation cannot drift from what lint
// accepts.
func Reference(kinds *Kinds) []Block {
	var out []Block
	seen := map[string]bool{}
	var walk func(path string, t reflect.Type)
	// oneOf lists a source's or sink's kinds as the keys of its block.
	oneOf := func(path string, ks []Kind) {
		b := Block{Path: path}
		for _, k := range ks {
			b.Keys = append(b.Keys, Key{Name: k.Key, Type: typeName(reflect.TypeOf(k.Config()))})
		}
		out = append(out, b)
		for _, k := range ks {
			walk(join(path, k.Key), reflect.TypeOf(k.Config()).Elem())
		}
	}
	walk = func(path string, t reflect.Type) {
		if seen[path] {
			return
		}
		seen[path] = true
		b := Block{Path: path}
		var nested []func()
		for _, f := range fieldsOf(t) {
			k := Key{Name: f.name, Type: typeName(f.typ), Required: f.required, Values: f.enum, Doc: f.doc, Path: f.path}
			if f.hasDef {
				k.Default = f.def
			}
			if f.hasMin {
				k.Min = f.minText
			}
			if f.hasMax {
				k.Max = f.maxText
			}
			b.Keys = append(b.Keys, k)
			et, sub := indirect(f.typ), join(path, f.name)
			switch {
			case f.role == "step":
				for _, k := range kinds.Steps {
					p := sub + "[]"
					if len(kinds.Steps) > 1 {
						p += " (" + k.Key + ")"
					}
					nested = append(nested, func() { walk(p, reflect.TypeOf(k.Config()).Elem()) })
				}
				continue
			case f.role != "":
				nested = append(nested, func() { oneOf(sub, kinds.role(f.role)) })
				continue
			}
			if et.Kind() == reflect.Slice && indirect(et.Elem()).Kind() == reflect.Struct {
				et, sub = indirect(et.Elem()), sub+"[]"
			}
			if et.Kind() == reflect.Struct {
				nested = append(nested, func() { walk(sub, et) })
			}
		}
		out = append(out, b)
		for _, n := range nested {
			n()
		}
	}
	walk("", reflect.TypeFor[Spec]())
	return out
}

// WriteReference writes Reference as Markdown, one table per block, for
// the README's YAML reference.
func WriteReference(w io.Writer, kinds *Kinds) error {
	var b strings.Builder
	for _, blk := range Reference(kinds) {
		title := blk.Path
		if title == "" {
			title = "top level"
		}
		fmt.Fprintf(&b, "#### `%s`\n\n| key | type | default | notes |\n|---|---|---|---|\n", title)
		for _, k := range blk.Keys {
			var notes []string
			if k.Required {
				notes = append(notes, "required")
			}
			if k.Values != nil {
				notes = append(notes, "one of "+strings.Join(k.Values, ", "))
			}
			switch {
			case k.Min != "" && k.Max != "":
				notes = append(notes, k.Min+" to "+k.Max)
			case k.Min != "":
				notes = append(notes, "at least "+k.Min)
			case k.Max != "":
				notes = append(notes, "at most "+k.Max)
			}
			if k.Path {
				notes = append(notes, "relative to the pipeline file's folder")
			}
			if k.Doc != "" {
				notes = append(notes, k.Doc)
			}
			def := ""
			if k.Default != "" {
				def = "`" + k.Default + "`"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", k.Name, k.Type, def, strings.Join(notes, "; "))
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
