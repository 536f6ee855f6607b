package pipelines

import (
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// interpolate expands ${VAR}, ${VAR:-default} and $$ in every scalar value
// of the tree, in place, before decoding, so that positions still point
// into the file. Keys are left alone: a key is a name, not data. The file
// may grow by d.room bytes (MaxExpandedSize less its size); past that,
// expansion stops at once with one error and d.overflow set.
func (d *decoder) interpolate(n *yaml.Node) {
	if d.overflow {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			d.interpolate(c)
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			d.interpolate(n.Content[i])
		}
	case yaml.ScalarNode:
		d.interpolateScalar(n)
	}
}

func (d *decoder) interpolateScalar(n *yaml.Node) {
	if !strings.Contains(n.Value, "$") {
		return
	}
	// The scalar's own bytes are already counted in the file's size.
	out, problems, over := expand(n.Value, d.env, d.room+len(n.Value))
	if over {
		d.overflow = true
		d.errs = append(d.errs[:0], &Error{File: d.file, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(
			"with its ${VAR} references expanded the file passes %d bytes (1 MiB), the cap for a pipeline; refer to fewer or smaller variables (data a step needs belongs in a file it reads)", MaxExpandedSize)})
		return
	}
	d.room -= len(out) - len(n.Value)
	for _, p := range problems {
		d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Col: scalarCol(n, p.offset), Msg: p.msg})
	}
	if len(problems) > 0 {
		d.badNodes[n] = true
		return
	}
	n.Value = out
	if n.Style == 0 {
		// A plain scalar is typed by what it says: "count: ${N}" with N=5
		// is the number 5, as if the file had said "count: 5".
		n.Tag = resolvePlain(out)
	}
}

// scalarCol maps a byte offset inside n.Value to a column of the file. It is
// exact for one-line plain and quoted scalars, the usual place for ${VAR};
// for block scalars it points at the scalar itself.
func scalarCol(n *yaml.Node, offset int) int {
	if strings.Contains(n.Value[:offset], "\n") {
		return n.Column
	}
	switch n.Style {
	case 0:
		return n.Column + offset
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		return n.Column + 1 + offset
	}
	return n.Column
}

type envProblem struct {
	offset int
	msg    string
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expand performs the substitution on one value. A "$" that does not start
// "${" or "$$" is kept, so regular expressions like "clicks-.*$" need no
// escaping. Like the shell, ":-" also applies when VAR is set but empty.
// over reports that the result would pass limit bytes; expand stops there,
// without building it.
func expand(s string, env func(string) (string, bool), limit int) (out string, problems []envProblem, over bool) {
	var b strings.Builder
	for i := 0; i < len(s); {
		if b.Len() > limit {
			return "", nil, true
		}
		c := s[i]
		if c != '$' || i+1 >= len(s) || (s[i+1] != '$' && s[i+1] != '{') {
			b.WriteByte(c)
			i++
			continue
		}
		if s[i+1] == '$' {
			b.WriteByte('$')
			i += 2
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			problems = append(problems, envProblem{i, `"${" is not closed; write ${VAR} or ${VAR:-default}, or "$${" for a literal "${"`})
			break
		}
		body := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(body, ":-")
		switch {
		case !envName.MatchString(name):
			problems = append(problems, envProblem{i, fmt.Sprintf("bad variable name %q in ${%s}; names are letters, digits and _, not starting with a digit (write $$ for a literal $)", name, body)})
		default:
			v, ok := env(name)
			switch {
			case ok && (v != "" || !hasDef):
				if b.Len()+len(v) > limit {
					return "", nil, true
				}
				b.WriteString(v)
			case hasDef:
				b.WriteString(def)
			default:
				problems = append(problems, envProblem{i, fmt.Sprintf("environment variable %s is not set; set it, or give a default with ${%s:-VALUE}", name, name)})
			}
		}
		i += end + 1
	}
	if b.Len() > limit {
		return "", nil, true
	}
	return b.String(), problems, false
}

var (
	plainInt   = regexp.MustCompile(`^[-+]?(0b[01_]+|0o[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)$`)
	plainFloat = regexp.MustCompile(`^([-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))$`)
)

// resolvePlain gives the YAML 1.2 core schema tag of a plain scalar, as the
// parser would have for the same text.
func resolvePlain(s string) string {
	switch s {
	case "", "~", "null", "Null", "NULL":
		return "!!null"
	case "true", "True", "TRUE", "false", "False", "FALSE":
		return "!!bool"
	}
	switch {
	case plainInt.MatchString(s):
		return "!!int"
	case plainFloat.MatchString(s):
		return "!!float"
	}
	return "!!str"
}
