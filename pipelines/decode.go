package pipelines

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// The decoder walks the yaml.Node tree against the Go types by reflection
// instead of using yaml's Decode: Decode stops at the first type error and
// does not give columns, and a lint run must report every problem with its
// place.

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[ByteSize]()
)

// field is one YAML key of a block, read from the struct tags once.
type field struct {
	name           string
	index          int
	typ            reflect.Type
	def            string
	hasDef         bool
	required       bool
	enum           []string
	min, max       int64 // bounds of an integer, a duration (ns) or a size (bytes)
	hasMin, hasMax bool
	minText        string // the bounds as the tags write them ("24h", "1TiB")
	maxText        string
	example        string
	doc            string // a short note for the reference (the doc tag)
	role           string // the kind tag: "source", "sink" or "step" for blocks of a kind
	path           bool   // path:"true": a file or folder, relative to the pipeline file's folder
}

var fieldCache sync.Map // reflect.Type → []field

// fieldsOf lists the YAML keys of struct type t in declaration order.
func fieldsOf(t reflect.Type) []field {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.([]field)
	}
	var fs []field
	for i := range t.NumField() {
		sf := t.Field(i)
		name := sf.Tag.Get("yaml")
		if name == "" || name == "-" || !sf.IsExported() {
			continue
		}
		f := field{name: name, index: i, typ: sf.Type, required: sf.Tag.Get("required") == "true", example: sf.Tag.Get("example"), doc: sf.Tag.Get("doc"), role: sf.Tag.Get("kind")}
		f.def, f.hasDef = sf.Tag.Lookup("default")
		f.path = sf.Tag.Get("path") == "true"
		if e := sf.Tag.Get("enum"); e != "" {
			f.enum = strings.Split(e, "|")
		}
		if m, ok := sf.Tag.Lookup("min"); ok {
			f.min, f.hasMin, f.minText = parseBound(t, sf, "min", m), true, m
		}
		if m, ok := sf.Tag.Lookup("max"); ok {
			f.max, f.hasMax, f.maxText = parseBound(t, sf, "max", m), true, m
		}
		fs = append(fs, f)
	}
	fieldCache.Store(t, fs)
	return fs
}

// parseBound reads a min or max tag as the field's values are written: a
// duration for a Duration, a size for a ByteSize, else an integer
// (underscores allowed: 1_000_000).
func parseBound(t reflect.Type, sf reflect.StructField, tag, s string) int64 {
	var (
		v   int64
		err error
	)
	switch indirect(sf.Type) {
	case durationType:
		var d time.Duration
		d, err = time.ParseDuration(s)
		v = int64(d)
	case sizeType:
		var b ByteSize
		b, err = ParseByteSize(s)
		v = int64(b)
	default:
		v, err = strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64)
	}
	if err != nil {
		panic(fmt.Sprintf("pipelines: bad %s tag on %s.%s: %v", tag, t.Name(), sf.Name, err))
	}
	return v
}

func fieldNames(fs []field) []string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.name
	}
	return names
}

// positions records where each key of the file was, by dotted path
// ("source.kafka.mode", "transforms[1].sha256").
type positions struct {
	key map[string]Pos // the key itself
	val map[string]Pos // its value
	bad map[string]bool
}

type decoder struct {
	kinds    *Kinds
	file     string
	env      func(string) (string, bool)
	errs     Errors
	where    *positions
	badNodes map[*yaml.Node]bool // values whose interpolation failed
	values   int
	tooMany  bool
	tooDeep  bool
	room     int  // how many bytes ${VAR} expansion may still add to the file
	overflow bool // expansion passed MaxExpandedSize: nothing else is read
}

func newDecoder(kinds *Kinds, file string, env func(string) (string, bool)) *decoder {
	return &decoder{
		kinds:    kinds,
		file:     file,
		env:      env,
		where:    &positions{key: map[string]Pos{}, val: map[string]Pos{}, bad: map[string]bool{}},
		badNodes: map[*yaml.Node]bool{},
	}
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, args...)})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// where renders a block path for messages.
func where(path string) string {
	if path == "" {
		return "at the top level"
	}
	return "in " + path
}

// deref follows an alias to the anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < maxDepth; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// count charges one value against the maxValues budget.
func (d *decoder) count(n *yaml.Node) bool {
	d.values++
	if d.values > maxValues {
		if !d.tooMany {
			d.tooMany = true
			d.errorf(n, "the file expands to more than %d values through aliases; write the values out instead of nesting aliases", maxValues)
		}
		return false
	}
	return true
}

// pair is one key: value of a mapping, after merge keys are applied.
type pair struct{ key, val *yaml.Node }

// pairs lists the entries of mapping n. Duplicate keys are reported; "<<"
// merge keys are honoured, with the mapping's own keys taking precedence.
func (d *decoder) pairs(path string, n *yaml.Node, depth int) []pair {
	var out []pair
	seen := map[string]*yaml.Node{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		dk := deref(k)
		if dk == nil || dk.Kind != yaml.ScalarNode {
			d.errorf(k, "a key %s must be a plain name, got %s; write name: value", where(path), describe(dk))
			continue
		}
		if dk.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if first, dup := seen[dk.Value]; dup {
			d.errorf(k, "duplicate key %q %s (first at line %d); keep one of them", dk.Value, where(path), first.Line)
			continue
		}
		seen[dk.Value] = k
		out = append(out, pair{k, v})
	}
	for _, m := range merges {
		dm := deref(m)
		var sources []*yaml.Node
		switch {
		case dm == nil:
		case dm.Kind == yaml.MappingNode:
			sources = []*yaml.Node{dm}
		case dm.Kind == yaml.SequenceNode:
			for _, c := range dm.Content {
				sources = append(sources, deref(c))
			}
		default:
			sources = []*yaml.Node{dm}
		}
		for _, src := range sources {
			if src == nil || src.Kind != yaml.MappingNode {
				d.errorf(m, "<< %s must merge a mapping or a list of mappings, got %s; write <<: *anchor", where(path), describe(src))
				continue
			}
			if depth >= maxDepth {
				d.errorf(m, "<< %s merges too deeply (more than %d levels); write the keys out", where(path), maxDepth)
				continue
			}
			for _, p := range d.pairs(path, src, depth+1) {
				if _, ok := seen[p.key.Value]; !ok {
					seen[p.key.Value] = p.key
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// value decodes n into v, reporting problems under path; false means v
// could not be decoded (a problem was reported).
func (d *decoder) value(path string, f *field, n *yaml.Node, v reflect.Value) bool {
	n = deref(n)
	if n == nil || !d.count(n) {
		return false
	}
	if d.badNodes[n] {
		return false
	}
	t := v.Type()
	switch t {
	case durationType:
		return d.duration(path, f, n, v)
	case sizeType:
		return d.size(path, f, n, v)
	case componentType:
		if f.role == "step" {
			return d.step(path, d.kinds.Steps, n, v)
		}
		return d.oneOf(path, d.kinds.role(f.role), n, v)
	}
	switch t.Kind() {
	case reflect.Struct:
		return d.structure(path, n, v)
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		if !d.value(path, f, n, p.Elem()) {
			return false
		}
		v.Set(p)
		return true
	case reflect.Slice:
		return d.slice(path, f, n, v)
	case reflect.Map:
		return d.mapping(path, f, n, v)
	case reflect.Interface:
		x, ok := d.anyValue(path, n, 0)
		if ok && x != nil {
			v.Set(reflect.ValueOf(x))
		}
		return ok
	case reflect.String:
		if n.Kind != yaml.ScalarNode || isNull(n) {
			return d.wrongType(path, f, n, t)
		}
		// Any scalar is accepted as text: "name: 2024" means the name "2024".
		v.SetString(n.Value)
		return d.checkEnum(path, f, n, n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			return d.wrongType(path, f, n, t)
		}
		b, _ := strconv.ParseBool(strings.ToLower(n.Value))
		v.SetBool(b)
		return true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return d.integer(path, f, n, v)
	}
	panic(fmt.Sprintf("pipelines: no decoder for %s at %s", t, path))
}

func (d *decoder) structure(path string, n *yaml.Node, v reflect.Value) bool {
	fs := fieldsOf(v.Type())
	if n.Kind != yaml.MappingNode && !isNull(n) {
		d.where.bad[path] = true
		return d.wrongType(path, nil, n, v.Type())
	}
	// Problems inside the block are reported and marked on their own
	// paths; the block itself still decodes, so later checks that only
	// need the rest of it run and one mistake gives one line.
	set := map[string]bool{}
	if n.Kind == yaml.MappingNode {
		for _, p := range d.pairs(path, n, 0) {
			key := deref(p.key).Value
			i := slices.IndexFunc(fs, func(f field) bool { return f.name == key })
			if i < 0 {
				d.errorf(p.key, "unknown key %q %s; %svalid keys: %s", key, where(path), didYouMean(key, fieldNames(fs)), strings.Join(fieldNames(fs), ", "))
				d.where.bad[path] = true
				continue
			}
			f := &fs[i]
			fp := join(path, key)
			d.where.key[fp] = Pos{p.key.Line, p.key.Column}
			dv := deref(p.val)
			if dv != nil {
				d.where.val[fp] = Pos{dv.Line, dv.Column}
			}
			// An empty value means "not set", so defaults apply; an empty
			// block ("stdout:") means the block with all its defaults.
			if dv != nil && isNull(dv) && !(f.typ.Kind() == reflect.Pointer && f.typ.Elem().Kind() == reflect.Struct) {
				if f.required {
					d.errorf(p.key, "%s is empty; write %s: %s", fp, f.name, sample(f))
					d.where.bad[fp] = true
					set[key] = true
				}
				continue
			}
			set[key] = true
			if !d.value(fp, f, p.val, v.Field(f.index)) {
				d.where.bad[fp] = true
			}
		}
	}
	for i := range fs {
		f := &fs[i]
		if set[f.name] {
			continue
		}
		if f.required {
			d.errorf(n, "missing required key %q %s; add %s: %s", f.name, where(path), f.name, sample(f))
			d.where.bad[join(path, f.name)] = true
			continue
		}
		applyDefault(v.Field(f.index), f)
	}
	return true
}

// applyDefault sets an absent key to its default; blocks that are not
// pointers (batch) get their own keys' defaults.
func applyDefault(v reflect.Value, f *field) {
	if f.hasDef {
		if err := setDefault(v, f.def); err != nil {
			panic(fmt.Sprintf("pipelines: bad default %q for %s: %v", f.def, f.name, err))
		}
		return
	}
	if v.Kind() == reflect.Struct && v.Type() != durationType {
		fs := fieldsOf(v.Type())
		for i := range fs {
			applyDefault(v.Field(fs[i].index), &fs[i])
		}
	}
}

// setDefault parses a `default` tag into v. Lists are written [a, b].
func setDefault(v reflect.Value, s string) error {
	if v.Type() == durationType {
		dd, err := time.ParseDuration(s)
		v.SetInt(int64(dd))
		return err
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		v.SetBool(b)
		return err
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(s, 10, 64)
		if err == nil && v.OverflowInt(i) {
			err = fmt.Errorf("%d overflows %s", i, v.Type())
		}
		v.SetInt(i)
		return err
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if err := setDefault(p.Elem(), s); err != nil {
			return err
		}
		v.Set(p)
	case reflect.Slice:
		inner, ok := strings.CutPrefix(s, "[")
		if inner, ok = strings.CutSuffix(inner, "]"); !ok {
			return fmt.Errorf("list default must be written [a, b]")
		}
		sl := reflect.MakeSlice(v.Type(), 0, 1)
		for item := range strings.SplitSeq(inner, ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			e := reflect.New(v.Type().Elem()).Elem()
			if err := setDefault(e, item); err != nil {
				return err
			}
			sl = reflect.Append(sl, e)
		}
		v.Set(sl)
	default:
		return fmt.Errorf("no default syntax for %s", v.Type())
	}
	return nil
}

func (d *decoder) slice(path string, f *field, n *yaml.Node, v reflect.Value) bool {
	if n.Kind != yaml.SequenceNode {
		return d.wrongType(path, f, n, v.Type())
	}
	sl := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	var ef *field // the list's tags are not its items', except a kind's role
	if v.Type().Elem() == componentType {
		ef = f
	}
	for i, c := range n.Content {
		ep := fmt.Sprintf("%s[%d]", path, i)
		if dc := deref(c); dc != nil {
			d.where.val[ep] = Pos{dc.Line, dc.Column}
			d.where.key[ep] = Pos{dc.Line, dc.Column}
		}
		if !d.value(ep, ef, c, sl.Index(i)) {
			d.where.bad[ep] = true
		}
	}
	v.Set(sl)
	return true
}

// oneOf decodes a source or sink: a mapping with exactly one key, the key
// of a kind, holding that kind's block.
func (d *decoder) oneOf(path string, kinds []Kind, n *yaml.Node, v reflect.Value) bool {
	keys := keysOf(kinds)
	if n.Kind != yaml.MappingNode {
		d.where.bad[path] = true
		d.errorf(n, "%s must be a mapping, got %s; write a mapping with keys %s", path, describe(n), strings.Join(keys, ", "))
		return false
	}
	type present struct {
		kind int
		key  *yaml.Node
		cfg  Config
	}
	var found []present
	for _, p := range d.pairs(path, n, 0) {
		key := deref(p.key).Value
		i := slices.Index(keys, key)
		if i < 0 {
			d.errorf(p.key, "unknown key %q %s; %svalid keys: %s", key, where(path), didYouMean(key, keys), strings.Join(keys, ", "))
			d.where.bad[path] = true
			continue
		}
		fp := join(path, key)
		d.where.key[fp] = Pos{p.key.Line, p.key.Column}
		if dv := deref(p.val); dv != nil {
			d.where.val[fp] = Pos{dv.Line, dv.Column}
		}
		cfg := kinds[i].Config()
		if !d.value(fp, nil, p.val, reflect.ValueOf(cfg).Elem()) {
			d.where.bad[fp] = true
		}
		found = append(found, present{i, p.key, cfg})
	}
	if d.where.bad[path] {
		return true // an unknown key: one mistake, one line
	}
	switch len(found) {
	case 0:
		d.errorf(n, "%s has no block; write exactly one of: %s", path, strings.Join(keys, ", "))
		d.where.bad[path] = true
	case 1:
		v.Set(reflect.ValueOf(Component{Kind: keys[found[0].kind], Config: found[0].cfg}))
	default:
		// Point at the block written last: the first one is usually the
		// intended one.
		last := found[0].key
		for _, f := range found[1:] {
			if f.key.Line > last.Line || (f.key.Line == last.Line && f.key.Column > last.Column) {
				last = f.key
			}
		}
		slices.SortFunc(found, func(a, b present) int { return a.kind - b.kind })
		names := make([]string, len(found))
		for i, f := range found {
			names[i] = keys[f.kind]
		}
		d.errorf(last, "%s has %d blocks (%s); a pipeline has exactly one %s, keep one of them", path, len(found), strings.Join(names, ", "), path)
		d.where.bad[path] = true
	}
	return true
}

// step decodes one transforms item: the block of the step kind whose key
// it has (with one step kind, the item is that kind's block whatever it
// holds, so a missing key is reported as such).
func (d *decoder) step(path string, kinds []Kind, n *yaml.Node, v reflect.Value) bool {
	var k *Kind
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content) && k == nil; i += 2 {
			if key := deref(n.Content[i]); key != nil {
				k = lookup(kinds, key.Value)
			}
		}
	}
	switch {
	case k == nil && len(kinds) == 1:
		k = &kinds[0]
	case k == nil:
		d.errorf(n, "%s names no step kind; write a mapping with one of the keys %s", path, strings.Join(keysOf(kinds), ", "))
		return false
	}
	cfg := k.Config()
	ok := d.value(path, nil, n, reflect.ValueOf(cfg).Elem())
	v.Set(reflect.ValueOf(Component{Kind: k.Key, Config: cfg}))
	return ok
}

func (d *decoder) mapping(path string, f *field, n *yaml.Node, v reflect.Value) bool {
	if n.Kind != yaml.MappingNode {
		return d.wrongType(path, f, n, v.Type())
	}
	m := reflect.MakeMap(v.Type())
	for _, p := range d.pairs(path, n, 0) {
		key := deref(p.key).Value
		d.remember(join(path, key), p)
		e := reflect.New(v.Type().Elem()).Elem()
		if !d.value(join(path, key), nil, p.val, e) {
			d.where.bad[join(path, key)] = true
			continue
		}
		m.SetMapIndex(reflect.ValueOf(key), e)
	}
	v.Set(m)
	return true
}

// remember records where a mapping's key and value are, so a block's
// Validate can point at a key of free-form settings.
func (d *decoder) remember(path string, p pair) {
	d.where.key[path] = Pos{p.key.Line, p.key.Column}
	if dv := deref(p.val); dv != nil {
		d.where.val[path] = Pos{dv.Line, dv.Column}
	}
}

// anyValue decodes free-form settings into plain Go values: map[string]any,
// []any, string, bool, int, float64 and nil, as a plugin expects them.
func (d *decoder) anyValue(path string, n *yaml.Node, depth int) (any, bool) {
	n = deref(n)
	if n == nil || !d.count(n) || d.badNodes[n] {
		return nil, false
	}
	if depth > maxDepth {
		if d.tooDeep {
			return nil, false
		}
		d.tooDeep = true
		if len(path) > 60 {
			path = path[:57] + "..."
		}
		d.errorf(n, "%s is nested more than %d levels deep (an alias inside itself?); flatten it", path, maxDepth)
		return nil, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		ok := true
		for _, p := range d.pairs(path, n, depth) {
			key := deref(p.key).Value
			d.remember(join(path, key), p)
			x, good := d.anyValue(join(path, key), p.val, depth+1)
			ok = ok && good
			m[key] = x
		}
		return m, ok
	case yaml.SequenceNode:
		l := make([]any, len(n.Content))
		ok := true
		for i, c := range n.Content {
			x, good := d.anyValue(fmt.Sprintf("%s[%d]", path, i), c, depth+1)
			ok = ok && good
			l[i] = x
		}
		return l, ok
	}
	switch n.ShortTag() {
	case "!!null":
		return nil, true
	case "!!bool":
		b, _ := strconv.ParseBool(strings.ToLower(n.Value))
		return b, true
	case "!!int":
		if i, err := parseInt(n.Value); err == nil && i >= math.MinInt && i <= math.MaxInt {
			return int(i), true
		}
		if u, err := strconv.ParseUint(strings.ReplaceAll(n.Value, "_", ""), 0, 64); err == nil {
			return u, true
		}
		return n.Value, true
	case "!!float":
		if f, ok := parseFloat(n.Value); ok {
			return f, true
		}
	}
	return n.Value, true
}

func parseInt(s string) (int64, error) {
	s = strings.ReplaceAll(s, "_", "")
	if t := strings.TrimLeft(s, "+-"); len(t) > 1 && t[0] == '0' && t[1] >= '0' && t[1] <= '9' {
		// YAML 1.2 reads 010 as ten, not as Go's octal eight.
		return strconv.ParseInt(s, 10, 64)
	}
	return strconv.ParseInt(s, 0, 64)
}

func parseFloat(s string) (float64, bool) {
	switch strings.ToLower(strings.TrimLeft(s, "+")) {
	case ".inf":
		return math.Inf(1), true
	case "-.inf":
		return math.Inf(-1), true
	case ".nan":
		return math.NaN(), true
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64)
	return f, err == nil
}

func (d *decoder) integer(path string, f *field, n *yaml.Node, v reflect.Value) bool {
	if n.Kind != yaml.ScalarNode {
		return d.wrongType(path, f, n, v.Type())
	}
	var i int64
	switch n.ShortTag() {
	case "!!int":
		var err error
		if i, err = parseInt(n.Value); err != nil {
			lo, hi := boundsOf(f, v.Type())
			d.errorf(n, "%s: %s is out of range; write a number between %d and %d", path, n.Value, lo, hi)
			return false
		}
	case "!!float":
		// 1e6 is a fine way to write a million records.
		fl, ok := parseFloat(n.Value)
		if !ok || fl != math.Trunc(fl) {
			return d.wrongType(path, f, n, v.Type())
		}
		if math.Abs(fl) > 1<<62 {
			// A whole number past int64, which YAML reads as a float.
			lo, hi := boundsOf(f, v.Type())
			if f != nil && f.hasMax && fl > 0 {
				d.errorf(n, "%s must be at most %s, got %s; write %s: %s or less%s", path, f.maxText, n.Value, f.name, f.maxText, maxNote(f))
			} else {
				d.errorf(n, "%s: %s is out of range; write a number between %d and %d", path, n.Value, lo, hi)
			}
			return false
		}
		i = int64(fl)
	default:
		return d.wrongType(path, f, n, v.Type())
	}
	if f != nil && f.hasMax && i > f.max {
		d.errorf(n, "%s must be at most %s, got %d; write %s: %s or less%s", path, f.maxText, i, f.name, f.maxText, maxNote(f))
		return false
	}
	if v.OverflowInt(i) {
		lo, hi := boundsOf(f, v.Type())
		d.errorf(n, "%s: %d is out of range; write a number between %d and %d", path, i, lo, hi)
		return false
	}
	if f != nil && f.hasMin && i < f.min {
		d.errorf(n, "%s must be at least %d, got %d; write %s: %d%s", path, f.min, i, f.name, max(f.min, 1), minNote(f))
		return false
	}
	v.SetInt(i)
	return true
}

// boundsOf is the range a message suggests for an integer key: its tags,
// else what its Go type holds.
func boundsOf(f *field, t reflect.Type) (lo, hi int64) {
	lo, hi = minOf(t), maxOf(t)
	if f != nil && f.hasMin {
		lo = f.min
	}
	if f != nil && f.hasMax {
		hi = f.max
	}
	return lo, hi
}

// maxNote says what a key's doc says about its values ("0 = unlimited"),
// so the user who wrote a huge number meaning "no limit" finds how to say it.
func maxNote(f *field) string {
	if f.hasMin && f.min == 0 && strings.Contains(f.doc, "0 =") {
		return fmt.Sprintf(" (%s)", f.doc)
	}
	return ""
}

// size decodes a ByteSize: a whole number of bytes or a number with a unit.
func (d *decoder) size(path string, f *field, n *yaml.Node, v reflect.Value) bool {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		return d.wrongType(path, f, n, v.Type())
	}
	key := lastKey(path, f)
	b, err := ParseByteSize(n.Value)
	if err != nil {
		d.errorf(n, "%s: %v; write a size such as %s: 256MiB (units B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)", path, err, key)
		return false
	}
	if !d.inBounds(path, f, n, int64(b), ByteSize(b).String()) {
		return false
	}
	v.SetInt(int64(b))
	return true
}

// inBounds checks a duration or a size against its min and max tags; shown
// is the value as a message writes it.
func (d *decoder) inBounds(path string, f *field, n *yaml.Node, x int64, shown string) bool {
	if f == nil {
		return true
	}
	if f.hasMax && x > f.max {
		d.errorf(n, "%s must be at most %s, got %s; write %s: %s or less", path, f.maxText, shown, f.name, f.maxText)
		return false
	}
	if f.hasMin && x < f.min {
		d.errorf(n, "%s must be at least %s, got %s; write %s: %s or more", path, f.minText, shown, f.name, f.minText)
		return false
	}
	return true
}

// minNote explains what zero means when zero is allowed.
func minNote(f *field) string {
	if f.min == 0 {
		return fmt.Sprintf(" or %s: 0", f.name)
	}
	return ""
}

func minOf(t reflect.Type) int64 { return -1 << (t.Bits() - 1) }
func maxOf(t reflect.Type) int64 { return 1<<(t.Bits()-1) - 1 }

func (d *decoder) duration(path string, f *field, n *yaml.Node, v reflect.Value) bool {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		return d.wrongType(path, f, n, v.Type())
	}
	key := lastKey(path, f)
	if n.ShortTag() == "!!int" {
		if i, err := parseInt(n.Value); err == nil && i == 0 {
			v.SetInt(0)
			return true
		}
		d.errorf(n, "%s: %s has no unit; write %s: %ss (or ms, m, h)", path, n.Value, key, n.Value)
		return false
	}
	dd, err := time.ParseDuration(n.Value)
	if err != nil {
		d.errorf(n, "%s: bad duration %q; write a Go duration such as %s: 200ms, 1s or 1m30s", path, n.Value, key)
		return false
	}
	if dd < 0 {
		d.errorf(n, "%s: duration %s is negative; write 0 or a positive duration such as %s: %s", path, n.Value, key, strings.TrimPrefix(n.Value, "-"))
		return false
	}
	if !d.inBounds(path, f, n, int64(dd), n.Value) {
		return false
	}
	v.SetInt(int64(dd))
	return true
}

func (d *decoder) checkEnum(path string, f *field, n *yaml.Node, s string) bool {
	if f == nil || f.enum == nil || slices.Contains(f.enum, s) {
		return true
	}
	d.errorf(n, "bad value %q for %s; %swrite one of: %s", s, path, didYouMean(s, f.enum), strings.Join(f.enum, ", "))
	return false
}

func lastKey(path string, f *field) string {
	if f != nil {
		return f.name
	}
	if i := strings.LastIndexAny(path, ".["); i >= 0 {
		return path[i+1:]
	}
	return path
}

func (d *decoder) wrongType(path string, f *field, n *yaml.Node, t reflect.Type) bool {
	msg := fmt.Sprintf("%s must be %s, got %s", path, describeType(t), describe(n))
	if n.Kind == yaml.ScalarNode && (n.Style == yaml.DoubleQuotedStyle || n.Style == yaml.SingleQuotedStyle) &&
		resolvePlain(n.Value) != "!!str" && resolvePlain(n.Value) == tagOf(t) {
		msg += fmt.Sprintf("; remove the quotes: write %s", n.Value)
	} else if f != nil {
		msg += fmt.Sprintf("; write %s: %s", f.name, sample(f))
	} else if t.Kind() == reflect.Struct || t.Kind() == reflect.Pointer {
		t = indirect(t)
		msg += fmt.Sprintf("; write a mapping with keys %s", strings.Join(fieldNames(fieldsOf(t)), ", "))
	} else {
		msg += fmt.Sprintf("; write e.g. %s", sampleType(t))
	}
	d.errorf(n, "%s", msg)
	return false
}

func indirect(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func describe(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.DocumentNode:
		return "a document"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:37] + "..."
	}
	switch n.ShortTag() {
	case "!!null":
		return "nothing (null)"
	case "!!int", "!!float":
		return "the number " + v
	case "!!bool":
		return v
	case "!!str":
		return strconv.Quote(v)
	}
	return fmt.Sprintf("%s %q", n.Tag, v)
}

// sample is what a message suggests writing for f.
func sample(f *field) string {
	switch {
	case f.example != "":
		return f.example
	case f.hasDef && indirect(f.typ).Kind() != reflect.Struct:
		return f.def
	case f.enum != nil:
		return f.enum[0]
	case f.hasMin:
		return strconv.FormatInt(max(f.min, 1), 10)
	}
	return sampleType(f.typ)
}
