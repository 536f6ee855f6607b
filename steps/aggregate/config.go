package aggregate

import (
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/steps/field"
)

// Step is an aggregate item of a pipeline file's transforms:
// `- aggregate: {...}`.
type Step struct {
	Aggregate Config `yaml:"aggregate" required:"true" example:"{key: key, functions: {count: count}}"`
}

// StateKey is what the step keys its state by (pipelines.KeyedConfig):
// lint warns when the input is not partitioned by it.
func (s *Step) StateKey() string { return s.Aggregate.Key }

// Config is the aggregate block.
type Config struct {
	Key             string             `yaml:"key" required:"true" example:"key" doc:"key: the record key; value: the whole value; else a dot-separated path into the JSON value"`
	Window          *Window            `yaml:"window" doc:"absent: a running total per key"`
	Time            string             `yaml:"time" default:"event" enum:"event|processing" doc:"event: time-field, or the record timestamp"`
	TimeField       string             `yaml:"time-field" doc:"event time: a JSON path holding RFC 3339 text or epoch milliseconds; absent: the record timestamp"`
	AllowedLateness pipelines.Duration `yaml:"allowed-lateness" max:"168h" doc:"event time: how far behind the newest time seen a record may be; later ones go to the dead letters"`
	Functions       map[string]string  `yaml:"functions" required:"true" example:"{count: count, total: sum(amount)}" doc:"output field: count, sum(F), min(F), max(F), avg(F) or count-distinct(F)"`
	Emit            string             `yaml:"emit" enum:"on-close|every-batch" doc:"absent: on-close with a window, every-batch without"`
}

// Window is the window block: exactly one of its keys.
type Window struct {
	Tumbling pipelines.Duration `yaml:"tumbling" max:"8784h" doc:"the window's length"`
	Sliding  *Sliding           `yaml:"sliding"`
	Session  *Session           `yaml:"session"`
}

// Sliding windows of Size start every Every.
type Sliding struct {
	Size  pipelines.Duration `yaml:"size" required:"true" max:"8784h" example:"10m" doc:"a multiple of every"`
	Every pipelines.Duration `yaml:"every" required:"true" max:"8784h" example:"1m"`
}

// Session windows close after Gap without a record of their key.
type Session struct {
	Gap pipelines.Duration `yaml:"gap" required:"true" max:"8784h" example:"30s"`
}

// Limits. Each bounds the state one key or one window can hold, so one hot
// or hostile key cannot grow a task's state without end.
const (
	// MaxFunctions bounds the functions of one step; distinct values are
	// filed under the function's index in one byte.
	MaxFunctions = 64
	// MaxWindowsPerRecord bounds size/every of a sliding window: each
	// record updates that many windows, so it is the step's cost per record.
	MaxWindowsPerRecord = 100
	// MaxOpenWindowsPerKey bounds the windows of one key open at once
	// (sessions, or tumbling and sliding windows kept open by
	// allowed-lateness): each is a state entry per key.
	MaxOpenWindowsPerKey = 1000
	// MaxDistinctPerWindow bounds the values one count-distinct keeps for
	// one window of one key (exact counting keeps every value in state).
	MaxDistinctPerWindow = 100_000
	// MaxAllowedLateness bounds allowed-lateness (a week): every window
	// of every key stays in state that much longer.
	MaxAllowedLateness = 7 * 24 * time.Hour
	// MaxKeyBytes bounds an aggregation key: it is part of the state keys
	// of its windows, which state.MaxKeyBytes bounds, with some framing.
	MaxKeyBytes = state.MaxKeyBytes - keyFraming
	// MinWindow is the shortest window length, gap or step: event times
	// are nanoseconds, but a window shorter than a millisecond is almost
	// certainly a unit mistake (1ns for 1s).
	MinWindow = time.Millisecond
	// MaxWindow is the longest window length or gap (a year): windows are
	// closed by the watermark, so a longer one is state that never leaves.
	MaxWindow = 366 * 24 * time.Hour
)

// keyFraming is what the state keys add to an aggregation key or a
// distinct value: tags, length prefixes, times and a function index.
const keyFraming = 32

// maxDistinctBytes bounds an aggregation key and a distinct value
// together: they make one state key.
const maxDistinctBytes = state.MaxKeyBytes - keyFraming

// Output fields the step writes itself; a function may not take their names.
const (
	outKey   = "key"
	outStart = "window_start"
	outEnd   = "window_end"
)

// Validate checks what the tags cannot: one window kind, window lengths,
// the functions, settings that only apply to event time.
func (s *Step) Validate(c *pipelines.Check) {
	if c.OK("aggregate") {
		s.Aggregate.validate(c, "aggregate.")
	}
}

func (a *Config) validate(c *pipelines.Check, p string) {
	if c.OK(p+"key") && a.Key != "" {
		if _, err := field.ParseKey(a.Key); err != nil {
			c.Errorf(p+"key", "%s %v", c.Path(p+"key"), err)
		}
	}
	if a.TimeField != "" && c.OK(p+"time-field") {
		if _, err := field.ParsePath(a.TimeField); err != nil {
			c.Errorf(p+"time-field", "%s %v", c.Path(p+"time-field"), err)
		}
	}
	processing := a.Time == "processing"
	if processing && a.TimeField != "" {
		c.KeyErrorf(p+"time-field", "%s reads event time, and time is processing; remove time-field, or write time: event", c.Path(p+"time-field"))
	}
	if processing && a.AllowedLateness != 0 {
		c.KeyErrorf(p+"allowed-lateness", "%s applies to event time; with time: processing no record is late, so remove it", c.Path(p+"allowed-lateness"))
	}
	if a.Window == nil && a.Emit == "on-close" {
		c.Errorf(p+"emit", "%s: on-close needs a window, and without one the step keeps a running total that never closes; write emit: every-batch, or add window: {tumbling: 1m}", c.Path(p+"emit"))
	}
	if a.Window == nil && a.AllowedLateness != 0 && !processing {
		c.KeyErrorf(p+"allowed-lateness", "%s applies to windows, and a running total takes every record; remove it, or add window: {tumbling: 1m}", c.Path(p+"allowed-lateness"))
	}
	if a.Window != nil && c.OK(p+"window") {
		a.Window.validate(c, p+"window", a.AllowedLateness.D())
	}
	if c.OK(p + "functions") {
		validateFunctions(c, p+"functions", a.Functions)
	}
}

func (w *Window) validate(c *pipelines.Check, p string, lateness time.Duration) {
	var set []string
	if w.Tumbling != 0 {
		set = append(set, "tumbling")
	}
	if w.Sliding != nil {
		set = append(set, "sliding")
	}
	if w.Session != nil {
		set = append(set, "session")
	}
	switch len(set) {
	case 0:
		if !c.OK(p+".tumbling", p+".sliding", p+".session") {
			return // named, but unreadable: that error says what to write
		}
		c.Errorf(p, "%s names no window; write {tumbling: 1m}, {sliding: {size: 10m, every: 1m}} or {session: {gap: 30s}}, or remove window for a running total", c.Path(p))
		return
	case 1:
	default:
		c.KeyErrorf(p+"."+set[1], "%s has both %s and %s; keep exactly one", c.Path(p), set[0], set[1])
		return
	}
	length := func(key string, d time.Duration) bool {
		if !c.OK(key) {
			return false
		}
		if d < MinWindow || d > MaxWindow {
			c.Errorf(key, "%s is %s; write a duration between %s and %s", c.Path(key), d, MinWindow, pipelines.Duration(MaxWindow))
			return false
		}
		return true
	}
	switch {
	case w.Tumbling != 0:
		if length(p+".tumbling", w.Tumbling.D()) {
			checkOpen(c, p+".tumbling", w.Tumbling.D(), w.Tumbling.D(), lateness)
		}
	case w.Sliding != nil:
		size, every := w.Sliding.Size.D(), w.Sliding.Every.D()
		if !length(p+".sliding.size", size) || !length(p+".sliding.every", every) {
			return
		}
		switch {
		case every > size:
			c.Errorf(p+".sliding.every", "%s (%s) is longer than size (%s), which would leave gaps no window covers; write every: %s or less", c.Path(p+".sliding.every"), every, size, w.Sliding.Size)
		case size%every != 0:
			c.Errorf(p+".sliding.size", "%s (%s) is not a multiple of every (%s); write size: %s", c.Path(p+".sliding.size"), size, every, pipelines.Duration(size/every*every+every))
		case size/every > MaxWindowsPerRecord:
			c.Errorf(p+".sliding.every", "%s: size/every is %d windows per record, more than %d; write every: %s or more", c.Path(p+".sliding.every"), size/every, MaxWindowsPerRecord, pipelines.Duration((size+MaxWindowsPerRecord-1)/MaxWindowsPerRecord))
		default:
			checkOpen(c, p+".sliding", size, every, lateness)
		}
	case w.Session != nil:
		length(p+".session.gap", w.Session.Gap.D())
	}
}

// checkOpen refuses a window whose allowed lateness keeps more than
// MaxOpenWindowsPerKey windows of one key open.
func checkOpen(c *pipelines.Check, key string, size, every, lateness time.Duration) {
	if n := openWindows(size, every, lateness); n > MaxOpenWindowsPerKey {
		c.Errorf(key, "%s with allowed-lateness %s keeps up to %d windows of a key open, more than %d; lengthen the window or shorten allowed-lateness", c.Path(key), lateness, n, MaxOpenWindowsPerKey)
	}
}

// openWindows is how many windows of one key can be open at once: those
// that end after the watermark (the newest time - lateness) and start at
// or before the newest time.
func openWindows(size, every, lateness time.Duration) int64 {
	return int64((size+lateness)/every) + 1
}

func validateFunctions(c *pipelines.Check, p string, fns map[string]string) {
	if len(fns) == 0 {
		c.Errorf(p, "%s is empty; write at least one, such as functions: {count: count}", c.Path(p))
		return
	}
	if len(fns) > MaxFunctions {
		c.Errorf(p, "%s has %d functions, more than %d; split the step in two", c.Path(p), len(fns), MaxFunctions)
		return
	}
	names := make([]string, 0, len(fns))
	for n := range fns {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		k := p + "." + n
		if !c.OK(k) {
			continue
		}
		if n == outKey || n == outStart || n == outEnd {
			c.KeyErrorf(k, "%s: %s is a field the step writes itself; name the function otherwise, such as %s_%s", c.Path(k), n, n, strings.SplitN(fns[n], "(", 2)[0])
			continue
		}
		if _, err := parseFunction(fns[n]); err != nil {
			c.Errorf(k, "%s: %v", c.Path(k), err)
		}
	}
}
