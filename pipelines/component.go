package pipelines

import (
	"fmt"
	"reflect"
	"strings"
)

// Kind is one source, sink or step kind a pipeline file can name: its
// YAML key, its block and what it can do. The table of kinds lives with
// the wiring (internal/components), which adds a build function to each;
// the loader, lint and the reference read the same entries through Kinds.
type Kind struct {
	// Key names the kind: the block under source: or sink: ("file"), or
	// the key that marks a transforms item ("plugin").
	Key string
	// Config returns a new block: a pointer to the struct whose tags
	// (yaml, default, required, enum, min, example, doc) declare its keys.
	Config func() Config
	Caps   Caps
}

// Config is a kind's block. Validate checks what its tags cannot (rules
// between keys); the tags were checked before, and Validate is not called
// for a block that failed to decode.
type Config interface {
	Validate(c *Check)
}

// Caps is what a kind can do; rules that span blocks and the wiring read
// them instead of naming kinds.
type Caps struct {
	// Transactional: a sink that commits output and positions in one
	// atomic step (ARCHITECTURE §4), so delivery: exactly-once is possible.
	Transactional bool
	// DeadLetters: how a sink keeps rejected records.
	DeadLetters DeadLetterSupport
	// Tasks: a source whose input splits into tasks that several
	// processes can share (its direct mode), or a sink that keeps a
	// checkpoint per task (engine.TaskSink). A pipeline whose source and
	// sink both can, delivering exactly-once, is split into tasks
	// (ARCHITECTURE §11).
	Tasks bool
	// Stateful: a step that keeps state in the pipeline's state backend
	// (engine.StateBackend), which commits with the sink's epochs: the
	// wiring gives such a pipeline a backend, and it needs delivery
	// exactly-once (ARCHITECTURE §18). A kind whose steps keep state only
	// when configured to (a plugin step's state: true) leaves it false and
	// implements StatefulConfig on its block.
	Stateful bool
	// Stage: a step that cuts the pipeline in two at its place, through an
	// internal topic on the source's Kafka cluster (repartition): it needs
	// a Kafka source, delivery exactly-once and dead letters in a topic
	// (ARCHITECTURE §20).
	Stage bool
}

// StatefulConfig is a step block that says whether the step keeps keyed
// state (a plugin step with state: true).
type StatefulConfig interface {
	Stateful() bool
}

// KeepsState reports whether a step of kind k configured by c keeps state.
func (k *Kind) KeepsState(c Config) bool {
	if k.Caps.Stateful {
		return true
	}
	sc, ok := c.(StatefulConfig)
	return ok && sc.Stateful()
}

// DeadLetterSupport says how a sink keeps dead letters with its output.
type DeadLetterSupport int

const (
	// NoDeadLetters: a pipeline with this sink cannot have dead-letter.
	NoDeadLetters DeadLetterSupport = iota
	// DeadLettersKept: the sink commits dead letters with its output
	// (dead-letter: {file}, where it uses the file) and can hand them
	// on (sinks.Outbox), so dead-letter: {topic} works through a
	// forwarder.
	DeadLettersKept
	// DeadLettersInTable: as DeadLettersKept, but the sink keeps them in
	// a table of its database (dead-letter: {table}); {file} is refused,
	// since nothing would be written there.
	DeadLettersInTable
	// DeadLettersInTopic: the sink writes dead letters to a topic in its
	// own transaction; dead-letter: {file} is refused.
	DeadLettersInTopic
)

// Kinds is the table of kinds a pipeline file is read with, by role.
type Kinds struct {
	Sources, Sinks, Steps []Kind
}

// Component is a source, a sink or a transforms step: the key of its kind
// and its block, a pointer to the kind's config struct.
type Component struct {
	Kind   string
	Config Config
}

var componentType = reflect.TypeFor[Component]()

// role returns the kinds of a role, named as the `kind` tag of a Spec
// field names it.
func (k *Kinds) role(role string) []Kind {
	switch role {
	case "source":
		return k.Sources
	case "sink":
		return k.Sinks
	case "step":
		return k.Steps
	}
	panic("pipelines: no role " + role)
}

func lookup(kinds []Kind, key string) *Kind {
	for i := range kinds {
		if kinds[i].Key == key {
			return &kinds[i]
		}
	}
	return nil
}

func keysOf(kinds []Kind) []string {
	keys := make([]string, len(kinds))
	for i, k := range kinds {
		keys[i] = k.Key
	}
	return keys
}

// Source returns the source kind the spec names, nil if the table has none.
func (k *Kinds) Source(key string) *Kind { return lookup(k.Sources, key) }

// Sink returns the sink kind the spec names, nil if the table has none.
func (k *Kinds) Sink(key string) *Kind { return lookup(k.Sinks, key) }

// Step returns the step kind the spec names, nil if the table has none.
func (k *Kinds) Step(key string) *Kind { return lookup(k.Steps, key) }

// Cluster is the Kafka cluster a block reaches: where dead-letter topics
// go when the sink does not write them itself.
type Cluster struct {
	Brokers []string
	TLS     *TLS
	SASL    *SASL
}

// OnCluster is a Config on a Kafka cluster (the kafka source and sink).
type OnCluster interface {
	Cluster() Cluster
}

// Check is what a block's Validate reports problems to. Keys are relative
// to the block ("roll.bytes"; "" is the block itself). A problem at a key
// that already failed to decode is dropped, so one mistake gives one line.
type Check struct {
	c    *checker
	path string
	spec *Spec
}

// Path returns the dotted path of key in the file ("sink.file.roll"), for
// messages.
func (k *Check) Path(key string) string {
	if key == "" {
		return k.path
	}
	return join(k.path, key)
}

// OK reports whether none of keys has a problem already.
func (k *Check) OK(keys ...string) bool {
	for _, key := range keys {
		if !k.c.ok(k.Path(key)) {
			return false
		}
	}
	return true
}

// Written reports whether the file wrote key (absent keys hold their
// defaults); for a spec built in Go, where there is no file, it returns
// nonzero: whether the field differs from its zero value.
func (k *Check) Written(key string, nonzero bool) bool {
	if k.c.w == nil {
		return nonzero
	}
	return k.c.set(k.Path(key))
}

// Errorf reports a problem at the value of key.
func (k *Check) Errorf(key, format string, args ...any) {
	k.c.at(k.Path(key), format, args...)
}

// KeyErrorf reports a problem at key itself.
func (k *Check) KeyErrorf(key, format string, args ...any) {
	k.c.atKey(k.Path(key), format, args...)
}

// Warnf reports, at the value of key, something that may still be fine
// when the pipeline runs (a plugin not built yet): lint prints it as a
// warning and fails on it only with --strict; loading succeeds.
func (k *Check) Warnf(key, format string, args ...any) {
	p := k.c.pos(k.Path(key), false)
	k.c.warns = append(k.c.warns, &Error{File: k.c.file, Line: p.Line, Col: p.Col, Msg: fmt.Sprintf(format, args...)})
}

// Resolve returns a path written in the file as the pipeline uses it:
// relative to the pipeline file's folder (Spec.Resolve).
func (k *Check) Resolve(p string) string { return k.spec.Resolve(p) }

// Delivery returns the pipeline's delivery mode (ExactlyOnce, ...), or ""
// when the delivery key has a problem of its own.
func (k *Check) Delivery() string {
	if !k.c.ok("delivery") {
		return ""
	}
	return k.spec.Delivery
}

// Brokers checks a brokers list: [builtin] or host:port addresses.
func (k *Check) Brokers(key string, brokers []string) { checkBrokers(k.c, k.Path(key), brokers) }

// Topic checks a Kafka topic name; "" passes (a required key is checked
// by its tag).
func (k *Check) Topic(key, topic string) { checkTopic(k.c, k.Path(key), topic) }

// validate runs a block's Validate unless the block already failed.
func (s *Spec) validate(c *checker, path string, b Component) {
	if b.Config == nil || !c.ok(path) {
		return
	}
	b.Config.Validate(&Check{c: c, path: path, spec: s})
}

// checkOneOf reports a source or sink of a spec built in Go that names no
// kind, or one the table lacks; for a file the decoder reports these.
func checkOneOf(c *checker, path string, b Component, kinds []Kind) {
	if c.w != nil {
		return
	}
	switch k := lookup(kinds, b.Kind); {
	case b.Kind == "":
		c.at(path, "%s has no block; write exactly one of: %s", path, strings.Join(keysOf(kinds), ", "))
	case k == nil:
		c.at(path, "%s %q is not a kind this sluice has; write one of: %s", path, b.Kind, strings.Join(keysOf(kinds), ", "))
	case b.Config == nil || reflect.TypeOf(b.Config) != reflect.TypeOf(k.Config()):
		c.at(path, "%s.%s holds a %T; the %s kind's block is a %T", path, b.Kind, b.Config, b.Kind, k.Config())
	}
}

// either lists words as "a, b or c".
func either(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return fmt.Sprintf("%s or %s", strings.Join(words[:len(words)-1], ", "), words[len(words)-1])
}

// SetDefaults sets every field of the struct v points to, a block built in
// Go, to its default tag, as the loader does for keys a file leaves out.
func SetDefaults(v any) {
	rv := reflect.ValueOf(v).Elem()
	fs := fieldsOf(rv.Type())
	for i := range fs {
		applyDefault(rv.Field(fs[i].index), &fs[i])
	}
}
