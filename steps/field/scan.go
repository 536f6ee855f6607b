package field

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Doc is a record value read as JSON one field at a time: Lookup scans
// the bytes for a path instead of decoding the whole value into maps,
// which the stateful steps did per record at a cost larger than their
// state's (BenchmarkAggregate). What lies outside the paths looked up is
// skipped, checked only as far as finding their ends needs.
type Doc struct{ data []byte }

// NewDoc reads value as JSON.
func NewDoc(value []byte) Doc { return Doc{data: value} }

// maxScanDepth bounds how deeply nested a value skipped over may be, as
// encoding/json bounds its own recursion: a value of a million '[' would
// otherwise cost as much memory to track.
const maxScanDepth = 10_000

var errTooDeep = errors.New("nested too deeply")

// Lookup returns the value at p, decoded as encoding/json decodes into
// an any (map[string]any, []any, string, float64, bool or nil); ok is
// false when the path leads nowhere. The error says the value is not
// JSON where it had to be read.
func (d Doc) Lookup(p Path) (any, bool, error) {
	raw, ok, err := find(d.data, p)
	if err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("value is not JSON: %w", err)
		}
		return nil, false, err
	}
	v, err := decodeRaw(raw)
	if err != nil {
		return nil, false, fmt.Errorf("value is not JSON: %w", err)
	}
	return v, true, nil
}

// find returns the raw JSON at path in data. Like encoding/json, a key
// that appears twice in an object means its last value.
func find(data []byte, path Path) ([]byte, bool, error) {
	s := scanner{b: data}
	for _, seg := range path {
		s.ws()
		if s.i >= len(s.b) {
			return nil, false, s.errorf("unexpected end")
		}
		switch s.b[s.i] {
		case '{':
			at, err := s.member(seg, true, 0)
			if err != nil || at < 0 {
				return nil, false, err
			}
			s.i = at
		case '[':
			at, err := s.element(seg, 0)
			if err != nil || at < 0 {
				return nil, false, err
			}
			s.i = at
		default:
			// A scalar has nothing inside; it must still be JSON.
			if err := s.skipValue(0); err != nil {
				return nil, false, err
			}
			return nil, false, nil
		}
	}
	s.ws()
	start := s.i
	if err := s.skipValue(0); err != nil {
		return nil, false, err
	}
	return s.b[start:s.i], true, nil
}

// decodeRaw decodes one JSON value: plain strings and numbers directly,
// anything else (escapes, containers) through encoding/json.
func decodeRaw(raw []byte) (any, error) {
	switch c := raw[0]; {
	case c == '"' && bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw):
		return string(raw[1 : len(raw)-1]), nil
	case c == '-' || c >= '0' && c <= '9':
		// The scanner checked JSON's number grammar, a subset of ParseFloat's.
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return nil, fmt.Errorf("number %s: %v", raw, err)
		}
		return f, nil
	case c == 't':
		return true, nil
	case c == 'f':
		return false, nil
	case c == 'n':
		return nil, nil
	}
	var v any
	err := json.Unmarshal(raw, &v)
	return v, err
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("at byte %d: %s", s.i, fmt.Sprintf(format, args...))
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// member scans the object at s.i for key (when find) and returns where
// its last value starts (-1: absent), leaving s.i past the object.
func (s *scanner) member(key string, find bool, depth int) (int, error) {
	s.i++ // '{'
	at := -1
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return -1, nil
	}
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return -1, s.errorf("want a member name")
		}
		start := s.i
		if err := s.skipString(); err != nil {
			return -1, err
		}
		match := false
		if find {
			var err error
			if match, err = keyIs(s.b[start:s.i], key); err != nil {
				return -1, err
			}
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return -1, s.errorf("want ':'")
		}
		s.i++
		s.ws()
		if match {
			at = s.i
		}
		if err := s.skipValue(depth + 1); err != nil {
			return -1, err
		}
		s.ws()
		if s.i >= len(s.b) {
			return -1, s.errorf("unexpected end")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return at, nil
		default:
			return -1, s.errorf("want ',' or '}'")
		}
	}
}

// keyIs reports whether the quoted member name raw is key.
func keyIs(raw []byte, key string) (bool, error) {
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw[1:len(raw)-1]) == key, nil
	}
	var k string
	if err := json.Unmarshal(raw, &k); err != nil {
		return false, err
	}
	return k == key, nil
}

// element scans the array at s.i for index seg (written as encoding/json
// paths are: decimal, no sign or leading zero) and returns where it
// starts (-1: absent), leaving s.i past the array.
func (s *scanner) element(seg string, depth int) (int, error) {
	want, err := strconv.Atoi(seg)
	if err != nil || want < 0 || strconv.Itoa(want) != seg {
		want = -1 // never found, but the array must still be JSON
	}
	s.i++ // '['
	at := -1
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return -1, nil
	}
	for n := 0; ; n++ {
		s.ws()
		if n == want {
			at = s.i
		}
		if err := s.skipValue(depth + 1); err != nil {
			return -1, err
		}
		s.ws()
		if s.i >= len(s.b) {
			return -1, s.errorf("unexpected end")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return at, nil
		default:
			return -1, s.errorf("want ',' or ']'")
		}
	}
}

// skipValue moves s.i past one value, checking its syntax.
func (s *scanner) skipValue(depth int) error {
	if depth > maxScanDepth {
		return errTooDeep
	}
	s.ws()
	if s.i >= len(s.b) {
		return s.errorf("unexpected end")
	}
	switch c := s.b[s.i]; {
	case c == '"':
		return s.skipString()
	case c == '{':
		_, err := s.member("", false, depth)
		return err
	case c == '[':
		_, err := s.element("", depth)
		return err
	case c == '-' || c >= '0' && c <= '9':
		return s.skipNumber()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return s.errorf("unexpected %q", s.b[s.i])
}

func (s *scanner) literal(lit string) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return s.errorf("want %s", lit)
	}
	s.i += len(lit)
	return nil
}

// skipString moves past a string, checking its escapes and that it has
// no control characters.
func (s *scanner) skipString() error {
	s.i++ // '"'
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return nil
		case c < 0x20:
			return s.errorf("control character in a string")
		case c == '\\':
			if s.i+1 >= len(s.b) {
				return s.errorf("unexpected end")
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) || !isHex(s.b[s.i+2:s.i+6]) {
					return s.errorf("bad \\u escape")
				}
				s.i += 6
			default:
				return s.errorf("bad escape")
			}
		default:
			s.i++
		}
	}
	return s.errorf("unterminated string")
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// skipNumber moves past a number of JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) skipNumber() error {
	if s.b[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case digits() == 0:
		return s.errorf("bad number")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return s.errorf("bad number")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return s.errorf("bad number")
		}
	}
	return nil
}
