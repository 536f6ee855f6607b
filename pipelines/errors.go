package pipelines

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a pipeline file. Msg says what is wrong and what
// to write instead.
type Error struct {
	File      string
	Line, Col int // 1-based; 0 when the problem has no place in the file
	Msg       string
}

// Error formats e as FILE:LINE:COL: MSG, the form editors and CI annotate.
func (e *Error) Error() string {
	switch {
	case e.Line == 0 && e.File == "":
		return e.Msg
	case e.Line == 0:
		return e.File + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is every problem found in one file, in file order. Load and Parse
// return it as their error; it prints one problem per line.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// sort orders es by position and drops exact duplicates (an anchor that is
// aliased twice would otherwise report the same problem twice).
func (es Errors) sort() Errors {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	es = slices.CompactFunc(es, func(a, b *Error) bool { return *a == *b })
	if len(es) > maxErrors {
		more := &Error{File: es[maxErrors].File, Line: es[maxErrors].Line, Col: es[maxErrors].Col,
			Msg: fmt.Sprintf("%d more problems from here on are not shown; fix the ones above and run lint again", len(es)-maxErrors)}
		es = append(es[:maxErrors:maxErrors], more)
	}
	return es
}

// err returns es as an error, or nil when es is empty (never a typed nil).
func (es Errors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Pos is a place in a pipeline file, 1-based.
type Pos struct{ Line, Col int }

// suggest returns the candidate closest to word by edit distance, or ""
// when none is close enough to be a likely typo.
func suggest(word string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(strings.ToLower(word), c)
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	// A third of the word, at least 2: catches "intreval" and "sinc"
	// without proposing "file" for "topic".
	if bestD < 0 || bestD > max(2, len(word)/3) || bestD >= len(word) {
		return ""
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours each cost 1.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// Suggest returns the candidate closest to word, or "" when none is close
// enough to be a likely typo: what a "did you mean" in a message names.
func Suggest(word string, candidates []string) string { return suggest(word, candidates) }

// didYouMean renders the suggestion part of a message, or "".
func didYouMean(word string, candidates []string) string {
	if s := suggest(word, candidates); s != "" {
		return fmt.Sprintf("did you mean %q? ", s)
	}
	return ""
}
