package host

import (
	"fmt"
	"strings"
	"testing"
)

func TestTail(t *testing.T) {
	many := func(n int) []string {
		var w []string
		for i := range n {
			w = append(w, fmt.Sprintf("line %d\n", i))
		}
		return w
	}
	tests := []struct {
		name   string
		writes []string
		want   []string // substrings, in order
		not    []string
	}{
		{"empty", nil, []string{"(nothing on stderr)"}, nil},
		{"split writes", []string{"hel", "lo\nwor", "ld"}, []string{"  hello\n  world"}, nil},
		{"keeps the last lines", many(stderrTailLines + 5), []string{"line 5\n", fmt.Sprintf("line %d", stderrTailLines+4)}, []string{"line 4\n"}},
		{"keeps a panic that scrolled out", append([]string{"panic: boom\n"}, many(stderrTailLines+1)...),
			[]string{"panic: boom\n  ...\n  line 1\n"}, []string{"line 0\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tl tail
			for _, w := range tt.writes {
				if _, err := tl.Write([]byte(w)); err != nil {
					t.Fatal(err)
				}
			}
			got := tl.String()
			rest := got
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("tail lacks %q (in order):\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			for _, n := range tt.not {
				if strings.Contains(got, n) {
					t.Errorf("tail still has %q:\n%s", n, got)
				}
			}
		})
	}
}
