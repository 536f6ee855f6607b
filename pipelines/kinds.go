package pipelines

import (
	"fmt"
	"reflect"
)

// valueKind is how a Go field type reads in YAML. Lint messages, their
// samples and the README reference all name a type through its kind, so a
// new kind is one constant, one case in kindOf and one row in kinds.
type valueKind int

const (
	kindOther valueKind = iota
	kindDuration
	kindSize
	kindString
	kindBool
	kindInt
	kindList
	kindMap
	kindStruct
)

func kindOf(t reflect.Type) valueKind {
	t = indirect(t)
	switch t {
	case durationType:
		return kindDuration
	case sizeType:
		return kindSize
	}
	switch t.Kind() {
	case reflect.String:
		return kindString
	case reflect.Bool:
		return kindBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return kindInt
	case reflect.Slice:
		return kindList
	case reflect.Map:
		return kindMap
	case reflect.Struct:
		return kindStruct
	}
	return kindOther
}

// kinds holds the words for each kind:
//   - tag: the YAML tag of a plain scalar of the kind, to spot a quoted
//     number or bool ("" if quoting cannot be the mistake);
//   - desc: what a message says the value must be;
//   - sample: what a message suggests writing;
//   - name: the type column of the README reference.
//
// Lists, mappings, blocks and other types compose their sample or name
// from the type itself: see sampleType and typeName.
var kinds = [...]struct{ tag, desc, sample, name string }{
	kindOther: {"", "a value", "...", ""},
	// Duration is an int64 underneath, and its tag has always followed.
	kindDuration: {"!!int", "a duration", "1s", "duration"},
	kindSize:     {"", "a size", "256MiB", "size"},
	kindString:   {"", "a string", "text", "string"},
	kindBool:     {"!!bool", "true or false", "true", "bool"},
	kindInt:      {"!!int", "a whole number", "1", "integer"},
	kindList:     {"", "a list", "[a, b]", ""},
	kindMap:      {"", "a mapping", "{key: value}", "mapping"},
	kindStruct:   {"", "a mapping", "...", "block"},
}

func tagOf(t reflect.Type) string        { return kinds[kindOf(t)].tag }
func describeType(t reflect.Type) string { return kinds[kindOf(t)].desc }

func sampleType(t reflect.Type) string {
	k := kindOf(t)
	t = indirect(t)
	switch k {
	case kindList:
		if kindOf(t.Elem()) == kindStruct {
			return "[" + sampleType(t.Elem()) + "]"
		}
	case kindStruct:
		fs := fieldsOf(t)
		for i := range fs {
			if fs[i].required {
				return fmt.Sprintf("{%s: %s}", fs[i].name, sample(&fs[i]))
			}
		}
		if len(fs) > 0 {
			return fmt.Sprintf("{%s: %s}", fs[0].name, sample(&fs[0]))
		}
	}
	return kinds[k].sample
}

func typeName(t reflect.Type) string {
	k := kindOf(t)
	t = indirect(t)
	switch k {
	case kindList:
		if kindOf(t.Elem()) == kindStruct {
			return "list of blocks"
		}
		return "list of " + typeName(t.Elem()) + "s"
	case kindMap:
		if t.Elem().Kind() == reflect.String {
			return "mapping of strings"
		}
	case kindOther:
		return t.String()
	}
	return kinds[k].name
}
