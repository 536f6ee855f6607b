package host

import (
	"bytes"
	"strings"
	"sync"
)

// stderrTailLines is how many of a plugin's last stderr lines a final error
// quotes: enough for a panic message and the top of its stack.
const stderrTailLines = 20

// tail keeps the last stderrTailLines lines written to it.
type tail struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			t.partial = append(t.partial, p...)
			break
		}
		t.push(string(append(t.partial, p[:i]...)))
		t.partial = t.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (t *tail) push(line string) {
	if len(t.lines) == stderrTailLines {
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:stderrTailLines-1]
	}
	t.lines = append(t.lines, line)
}

// String returns the kept lines, indented for quoting inside an error.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.partial) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(t.partial))
	}
	if len(lines) == 0 {
		return "  (nothing on stderr)"
	}
	return "  " + strings.Join(lines, "\n  ")
}
