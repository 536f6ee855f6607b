package host

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
)

// stderrTailLines is how many of a plugin's last stderr lines a final error
// quotes: enough for a panic message and the top of its stack.
const stderrTailLines = 20

// tail keeps the last stderrTailLines lines written to it, and the first
// line of a Go panic, which a long stack trace would push out.
type tail struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
	panic   string
	dropped bool // the panic line is no longer among lines
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = splitLines(t.partial, p, t.push)
	return len(p), nil
}

// splitLines calls line for each complete line of partial+p (without its
// '\n') and returns what is left of an unfinished last line, to pass as
// partial next time.
func splitLines(partial, p []byte, line func(string)) []byte {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			return append(partial, p...)
		}
		line(string(append(partial, p[:i]...)))
		partial = partial[:0]
		p = p[i+1:]
	}
	return partial
}

func (t *tail) push(line string) {
	if t.panic == "" && (strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ")) {
		t.panic = line
	}
	if len(t.lines) == stderrTailLines {
		if t.lines[0] == t.panic {
			t.dropped = true
		}
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
	if t.dropped {
		lines = append([]string{t.panic, "..."}, lines...)
	}
	return "  " + strings.Join(lines, "\n  ")
}

// lineLogger logs each line written to it and keeps it in tail.
type lineLogger struct {
	log     *slog.Logger
	tail    *tail
	mu      sync.Mutex
	partial []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	_, _ = l.tail.Write(p)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = splitLines(l.partial, p, func(line string) { l.log.Info(line) })
	return len(p), nil
}
