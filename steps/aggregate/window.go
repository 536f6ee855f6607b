package aggregate

import "math"

// window is [start, end) in Unix nanoseconds.
type window struct{ start, end int64 }

// windowKind says how records are assigned to windows.
type windowKind int

const (
	windowNone windowKind = iota // one running total per key
	windowTumbling
	windowSliding
	windowSession
)

// windowing is a Window block read into nanoseconds.
type windowing struct {
	kind        windowKind
	size, every int64 // tumbling: size = every
	gap         int64
}

func newWindowing(w *Window) windowing {
	switch {
	case w == nil:
		return windowing{kind: windowNone}
	case w.Tumbling != 0:
		return windowing{kind: windowTumbling, size: int64(w.Tumbling), every: int64(w.Tumbling)}
	case w.Sliding != nil:
		return windowing{kind: windowSliding, size: int64(w.Sliding.Size), every: int64(w.Sliding.Every)}
	case w.Session != nil:
		return windowing{kind: windowSession, gap: int64(w.Session.Gap)}
	}
	return windowing{kind: windowNone}
}

// floorDiv rounds toward minus infinity, so times before 1970 fall in the
// window that holds them.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// assign appends the windows of a tumbling or sliding windowing that hold
// t, oldest first; a session's own window [t, t+gap), which then merges
// with the key's sessions it touches; none's single window.
func (w *windowing) assign(dst []window, t int64) []window {
	switch w.kind {
	case windowNone:
		return append(dst, window{0, math.MaxInt64})
	case windowSession:
		return append(dst, window{t, sat(t, w.gap)})
	}
	last := floorDiv(t, w.every) * w.every
	first := last - (w.size/w.every-1)*w.every
	for s := first; s <= last; s += w.every {
		dst = append(dst, window{s, sat(s, w.size)})
	}
	return dst
}

// sat adds without overflowing past the end of time.
func sat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
