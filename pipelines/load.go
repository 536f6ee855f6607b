package pipelines

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads, interpolates, decodes and validates the pipeline file at
// path, with ${VAR} taken from the process environment, against the
// kinds of the table. On failure the error is an Errors listing every
// problem in the file.
func Load(path string, kinds *Kinds) (*Spec, error) {
	fail := func(msg string) (*Spec, error) {
		return nil, Errors{{File: path, Line: 1, Col: 1, Msg: msg}}
	}
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is already in FILE
		}
		return nil, Errors{{File: path, Msg: fmt.Sprintf("cannot read the pipeline file: %v; check the path", err)}}
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, Errors{{File: path, Msg: "is a directory; give the path of a pipeline .yaml file"}}
	}
	// Read one byte past the limit so an oversized file is seen without
	// reading all of it.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return fail(fmt.Sprintf("cannot read the pipeline file: %v", err))
	}
	return Parse(path, data, os.LookupEnv, kinds)
}

// Parse decodes and validates one pipeline file's contents. name is used
// as FILE in messages and stored in Spec.File; env looks up ${VAR} (nil
// means the process environment); kinds is the table of source, sink and
// step kinds the file may name. On failure the error is an Errors listing
// every problem found; Parse never returns both nil.
func Parse(name string, data []byte, env func(string) (string, bool), kinds *Kinds) (spec *Spec, err error) {
	if env == nil {
		env = os.LookupEnv
	}
	fail := func(line, col int, msg string) (*Spec, error) {
		return nil, Errors{{File: name, Line: line, Col: col, Msg: msg}}
	}
	if len(data) > MaxFileSize {
		return fail(1, 1, fmt.Sprintf("file is larger than %d bytes (1 MiB), too large for a pipeline; check that this is the pipeline file", MaxFileSize))
	}
	root, perr := parseDocument(data)
	if perr != nil {
		return nil, Errors{{File: name, Line: perr.Line, Col: perr.Col, Msg: perr.Msg}}
	}
	body := root.Content[0]
	if body.Kind != yaml.MappingNode {
		return fail(body.Line, body.Column, fmt.Sprintf("a pipeline file must be a mapping of keys, got %s; start with version: 1 and name: my-pipeline", describe(body)))
	}

	d := newDecoder(kinds, name, env)
	d.room = MaxExpandedSize - len(data)
	d.interpolate(root)
	if d.overflow {
		return nil, d.errs
	}
	spec = &Spec{File: name, where: d.where}
	d.value("", nil, body, reflect.ValueOf(spec).Elem())
	d.errs = append(d.errs, spec.check(kinds)...)
	if len(d.errs) > 0 {
		return nil, d.errs.sort()
	}
	resolvePaths(spec, reflect.ValueOf(spec).Elem())
	return spec, nil
}

// resolvePaths makes every relative path:"true" key of a loaded file
// relative to the file's folder (Spec.Resolve), so a pipeline writes to the
// same place whatever the current directory of run or the daemon is. It
// runs after validation, so messages show paths as the file wrote them.
func resolvePaths(spec *Spec, v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			resolvePaths(spec, v.Elem())
		}
	case reflect.Slice:
		for i := range v.Len() {
			resolvePaths(spec, v.Index(i))
		}
	case reflect.Struct:
		if v.Type() == componentType {
			resolvePaths(spec, v.Field(1)) // Config
			return
		}
		for _, f := range fieldsOf(v.Type()) {
			fv := v.Field(f.index)
			if f.path && fv.Kind() == reflect.String && fv.CanSet() {
				fv.SetString(spec.Resolve(fv.String()))
				continue
			}
			resolvePaths(spec, fv)
		}
	}
}

// syntaxError is a problem found before there is a node tree.
type syntaxError struct {
	Line, Col int
	Msg       string
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseDocument parses data as exactly one YAML document.
func parseDocument(data []byte) (doc *yaml.Node, serr *syntaxError) {
	// yaml.v3 has had panics on hostile input; one bad file must give one
	// line, never take down the daemon that is reloading it.
	defer func() {
		if r := recover(); r != nil {
			doc, serr = nil, &syntaxError{1, 1, fmt.Sprintf("not valid YAML (the parser failed: %v); check the file's indentation and quoting", r)}
		}
	}()
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &syntaxError{1, 1, "file is empty; a pipeline needs at least version: 1, name, source and sink"}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first yaml.Node
	if err := dec.Decode(&first); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &syntaxError{1, 1, "file has no YAML content, only comments; a pipeline needs at least version: 1, name, source and sink"}
		}
		return nil, yamlSyntax(err, data)
	}
	var second yaml.Node
	switch err := dec.Decode(&second); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlSyntax(err, data)
	case len(second.Content) == 1 && isNull(second.Content[0]) && second.Content[0].Value == "":
		// A trailing "---" with nothing after it is harmless.
	default:
		at := &second
		if len(second.Content) > 0 {
			at = second.Content[0]
		}
		return nil, &syntaxError{at.Line, at.Column, "file holds more than one YAML document (a second one starts here, after a ---); put each pipeline in its own file"}
	}
	if first.Kind != yaml.DocumentNode || len(first.Content) != 1 {
		return nil, &syntaxError{1, 1, "file has no YAML content; a pipeline needs at least version: 1, name, source and sink"}
	}
	return &first, nil
}

// parserProblems are yaml.v3's parser (not scanner) errors: it reports
// their line 0-based, counted from the start of the enclosing mapping or
// list rather than the exact token.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

func yamlSyntax(err error, data []byte) *syntaxError {
	// yaml.v3 reports "yaml: line N: problem" without a column.
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil && strings.Contains(err.Error(), "control characters") {
		// Reported without a line: find the first one ourselves.
		for i, c := range data {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				line := 1 + bytes.Count(data[:i], []byte("\n"))
				col := i - bytes.LastIndexByte(data[:i], '\n')
				return &syntaxError{line, col, fmt.Sprintf("not valid YAML: control character %#x; a pipeline file is text, remove it", c)}
			}
		}
	}
	if m == nil {
		return &syntaxError{1, 1, fmt.Sprintf("not valid YAML: %s; check the file's indentation and quoting", strings.TrimPrefix(err.Error(), "yaml: "))}
	}
	line, _ := strconv.Atoi(m[1])
	if parserProblems[m[2]] {
		line++
		// The usual cause: an unquoted ${VAR} in a flow mapping, where
		// { and } are YAML syntax.
		if l := lineOf(data, line); strings.Contains(l, "${") && strings.ContainsAny(l, "{[") {
			return &syntaxError{line, 1, fmt.Sprintf("not valid YAML: %s; quote a ${VAR} inside { } or [ ]: write \"${VAR}\"", m[2])}
		}
		return &syntaxError{line, 1, fmt.Sprintf("not valid YAML: %s in the mapping or list around here; check indentation and quoting (a value with { } [ ] or ': ' needs quotes)", m[2])}
	}
	return &syntaxError{line, 1, fmt.Sprintf("not valid YAML: %s; check indentation and quoting on this line", m[2])}
}

// lineOf returns line n (1-based) of data, or "".
func lineOf(data []byte, n int) string {
	for i, l := range bytes.Split(data, []byte("\n")) {
		if i == n-1 {
			return string(l)
		}
	}
	return ""
}
