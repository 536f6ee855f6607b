package pipelines

import (
	"fmt"
	"net"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// Validate checks a spec against every rule of version 1 and the kinds of
// the table: value ranges, allowed values, each block's own Validate, and
// the rules that span blocks (a source and a sink of known kinds, delivery
// against the sink's capabilities, dead letters, ...). Load and Parse have
// already run it; call it on a Spec built in Go. The error is an Errors.
func (s *Spec) Validate(kinds *Kinds) error {
	var errs Errors
	if s.where == nil {
		errs = checkTags(s.File, "", reflect.ValueOf(s).Elem())
	}
	return append(errs, s.check(kinds)...).sort().err()
}

// checker reports problems at the position of a key path; a spec built in
// Go has no positions and its problems carry only the file name.
type checker struct {
	file  string
	w     *positions
	errs  Errors
	warns Errors
}

// ok reports whether none of paths already had a problem, so one mistake
// gives one line, not a cascade.
func (c *checker) ok(paths ...string) bool {
	if c.w == nil {
		return true
	}
	for _, p := range paths {
		if c.w.bad[p] {
			return false
		}
	}
	return true
}

// set reports whether the file wrote path (a Go-built spec: always).
func (c *checker) set(path string) bool {
	if c.w == nil {
		return true
	}
	_, ok := c.w.key[path]
	return ok
}

func (c *checker) pos(path string, key bool) Pos {
	if c.w == nil {
		return Pos{}
	}
	for {
		m := c.w.val
		if key {
			m = c.w.key
		}
		if p, ok := m[path]; ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return Pos{1, 1}
		}
		path = path[:i]
	}
}

func (c *checker) add(p Pos, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.file, Line: p.Line, Col: p.Col, Msg: fmt.Sprintf(format, args...)})
}

// at reports at the value of path; atKey at the key itself.
func (c *checker) at(path, format string, args ...any) { c.add(c.pos(path, false), format, args...) }
func (c *checker) atKey(path, format string, args ...any) {
	c.add(c.pos(path, true), format, args...)
}

// check runs the rules that need more than one key. Warnings (what may be
// fine by the time the pipeline runs, such as a plugin not built yet) are
// kept on the spec for lint.
func (s *Spec) check(kinds *Kinds) Errors {
	c := &checker{file: s.File, w: s.where}
	s.checkAll(c, kinds)
	s.warnings = c.warns.sort()
	return c.errs
}

func (s *Spec) checkAll(c *checker, kinds *Kinds) {

	if c.ok("version") && c.set("version") && s.Version != 1 {
		c.at("version", "unsupported version %d; write version: 1 (the only version this sluice reads)", s.Version)
	}
	if c.ok("name") && c.set("name") {
		switch {
		case len(s.Name) > MaxNameLength:
			c.at("name", "name is %d characters, longer than %d; shorten it", len(s.Name), MaxNameLength)
		case stageNameRE.MatchString(s.Name):
			c.at("name", "name %q ends like the stage of a pipeline cut by repartition steps (NAME.repartition-N), which would share its topics and checkpoints; rename it, e.g. name: %s", s.Name, strings.ReplaceAll(s.Name, ".repartition-", "-repartition-"))
		case !nameRE.MatchString(s.Name):
			c.at("name", "bad name %q: it becomes a directory, group id and metric label; use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit, e.g. name: %s", s.Name, suggestName(s.Name))
		}
	}
	if c.set("source") {
		checkOneOf(c, "source", s.Source, kinds.Sources)
	}
	if c.set("sink") {
		checkOneOf(c, "sink", s.Sink, kinds.Sinks)
	}
	source, sink := kinds.Source(s.Source.Kind), kinds.Sink(s.Sink.Kind)
	if source == nil || sink == nil {
		// Reported above, or by the decoder; the rest needs both.
		return
	}
	s.validate(c, "source."+s.Source.Kind, s.Source)
	s.validate(c, "sink."+s.Sink.Kind, s.Sink)
	for i, t := range s.Transforms {
		s.validate(c, fmt.Sprintf("transforms[%d]", i), t)
	}

	if !sink.Caps.Transactional && s.Delivery == ExactlyOnce && c.ok("delivery", "sink") {
		p := c.pos("sink."+sink.Key, true)
		how := "(the default) "
		if c.w == nil || c.set("delivery") {
			p, how = c.pos("delivery", false), ""
		}
		c.add(p, "delivery: exactly-once %sis impossible with the %s sink: it cannot take back output it wrote before a crash; write delivery: at-least-once, or use a transactional sink: %s", how, sink.Key, either(sinksWith(kinds, func(c Caps) bool { return c.Transactional })))
	}
	s.checkStateful(c, kinds)
	s.checkStages(c, kinds)
	s.checkPartitioning(c)
	if dl := s.DeadLetter; dl != nil && c.ok("dead-letter", "dead-letter.topic", "dead-letter.file", "dead-letter.table", "sink") {
		s.checkDeadLetter(c, dl, kinds, sink)
	}
}

// checkStateful refuses a stateful step in a pipeline that does not
// deliver exactly once: its state commits with the sink's epochs, and
// without them a replay would count twice or not at all.
func (s *Spec) checkStateful(c *checker, kinds *Kinds) {
	if s.Delivery == ExactlyOnce || !c.ok("delivery") {
		return
	}
	for i, t := range s.Transforms {
		if k := kinds.Step(t.Kind); k != nil && k.KeepsState(t.Config) {
			c.atKey(fmt.Sprintf("transforms[%d].%s", i, t.Kind), "the %s step keeps state that commits with the sink's output, which takes delivery: exactly-once, not %s; write delivery: exactly-once with a transactional sink (%s)",
				t.Kind, s.Delivery, either(sinksWith(kinds, func(c Caps) bool { return c.Transactional })))
			return
		}
	}
}

// checkDeadLetter checks the dead-letter destination against what the
// sink can do with it.
func (s *Spec) checkDeadLetter(c *checker, dl *DeadLetter, kinds *Kinds, sink *Kind) {
	var set []string
	for _, k := range []struct{ key, v string }{{"topic", dl.Topic}, {"file", dl.File}, {"table", dl.Table}} {
		if k.v != "" {
			set = append(set, k.key)
		}
	}
	switch {
	case len(set) > 1:
		c.atKey("dead-letter."+set[1], "dead-letter has both %s and %s; keep exactly one: rejected records go to one place", set[0], set[1])
	case len(set) == 0:
		c.at("dead-letter", "dead-letter needs a destination; write dead-letter: {topic: NAME}, {file: PATH} (file sink) or {table: NAME} (postgres sink)")
	case sink.Caps.DeadLetters == NoDeadLetters:
		c.atKey("dead-letter", "the %s sink cannot keep dead letters with its output; remove dead-letter, or use the %s sink", sink.Key,
			either(sinksWith(kinds, func(c Caps) bool { return c.DeadLetters != NoDeadLetters })))
	case dl.Topic != "" && sink.Caps.DeadLetters != DeadLettersInTopic && s.Cluster() == nil:
		instead := "{file: PATH}"
		if sink.Caps.DeadLetters == DeadLettersInTable {
			instead = "{table: sluice_dead_letters}"
		}
		c.atKey("dead-letter.topic", "dead-letter topics go to the pipeline's Kafka cluster, and this pipeline has no source or sink on one; write dead-letter: %s", instead)
	case dl.Topic != "":
		checkTopic(c, "dead-letter.topic", dl.Topic)
	case sink.Caps.DeadLetters == DeadLettersInTopic:
		c.atKey("dead-letter."+set[0], "dead-letter: {%s} cannot commit in the %s sink's transaction; write dead-letter: {topic: NAME}", set[0], sink.Key)
	case dl.File != "" && sink.Caps.DeadLetters == DeadLettersInTable:
		c.atKey("dead-letter.file", "the %s sink keeps dead letters in a table of its database, in the batch's transaction, never in files; write dead-letter: {table: sluice_dead_letters}, or {topic: NAME} to forward them to Kafka", sink.Key)
	case dl.Table != "" && sink.Caps.DeadLetters != DeadLettersInTable:
		c.atKey("dead-letter.table", "the %s sink keeps dead letters in files, not in a table; write dead-letter: {file: PATH}, or {topic: NAME} to forward them to Kafka", sink.Key)
	case dl.Table != "":
		checkIdentifier(c, "dead-letter.table", dl.Table)
	}
}

// maxIdentifier is PostgreSQL's NAMEDATALEN - 1: a longer table name is
// silently truncated by the server, so two pipelines' names could meet.
const maxIdentifier = 63

// checkIdentifier accepts a table name without a schema: the dead-letter
// table lives in the target table's schema, beside the checkpoints.
func checkIdentifier(c *checker, p, name string) {
	switch {
	case strings.Contains(name, "."):
		c.at(p, "dead-letter.table %q names a schema; write the table's name alone: it lives in the schema of the sink's table", name)
	case len(name) > maxIdentifier:
		c.at(p, "dead-letter.table is %d bytes, longer than PostgreSQL's %d; shorten it", len(name), maxIdentifier)
	}
}

// Cluster returns the Kafka cluster dead-letter topics go to: the sink's,
// or else the source's; nil when neither is on one.
func (s *Spec) Cluster() *Cluster {
	for _, b := range []Component{s.Sink, s.Source} {
		if oc, ok := b.Config.(OnCluster); ok {
			c := oc.Cluster()
			return &c
		}
	}
	return nil
}

// sinksWith lists the sink kinds whose capabilities pass has.
func sinksWith(kinds *Kinds, has func(Caps) bool) []string {
	var keys []string
	for _, k := range kinds.Sinks {
		if has(k.Caps) {
			keys = append(keys, k.Key)
		}
	}
	return keys
}

// topicRE is what Kafka accepts as a topic name.
var topicRE = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// maxTopicLength is Kafka's limit on a topic name.
const maxTopicLength = 249

// checkTopic accepts an empty name (a required key is checked elsewhere)
// or one Kafka would create.
func checkTopic(c *checker, p, topic string) {
	if !c.ok(p) || topic == "" {
		return
	}
	switch {
	case len(topic) > maxTopicLength:
		c.at(p, "topic name is %d characters, longer than Kafka's %d; shorten it", len(topic), maxTopicLength)
	case topic == "." || topic == ".." || !topicRE.MatchString(topic):
		c.at(p, "bad topic name %q: Kafka allows letters, digits, '.', '_' and '-'; write e.g. %s", topic, suggestName(topic))
	}
}

// checkBrokers accepts [builtin] or a list of host:port addresses at p.
func checkBrokers(c *checker, p string, brokers []string) {
	if !c.ok(p) {
		return
	}
	if len(brokers) == 0 {
		c.at(p, "brokers is empty; write brokers: [builtin] for the built-in broker, or list host:port addresses")
	}
	for i, b := range brokers {
		bp := fmt.Sprintf("%s[%d]", p, i)
		if b == "builtin" {
			if len(brokers) > 1 {
				c.at(bp, "brokers mixes builtin with external brokers; write brokers: [builtin] or list only host:port addresses")
			}
			continue
		}
		if _, port, err := net.SplitHostPort(b); err != nil || !isPort(port) {
			c.at(bp, "broker %q is not host:port; write e.g. brokers: [kafka-1:9092] or brokers: [builtin]", b)
		}
	}
}

func isPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n < 65536
}

// suggestName turns a rejected name into one that would be accepted.
func suggestName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := strings.TrimLeft(b.String(), "-._")
	if out == "" {
		return "my-pipeline"
	}
	return out
}

// shown writes an integer, duration or size field's value for a message.
func shown(v reflect.Value) string {
	if s, ok := v.Interface().(fmt.Stringer); ok {
		return s.String()
	}
	return strconv.FormatInt(v.Int(), 10)
}

// checkTags applies the enum, min and max tags to a Spec built in Go; for a file
// the decoder checks them as it reads each value.
func checkTags(file, path string, v reflect.Value) Errors {
	var errs Errors
	add := func(format string, args ...any) {
		errs = append(errs, &Error{File: file, Msg: fmt.Sprintf(format, args...)})
	}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			errs = append(errs, checkTags(file, path, v.Elem())...)
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Struct {
			for i := range v.Len() {
				errs = append(errs, checkTags(file, fmt.Sprintf("%s[%d]", path, i), v.Index(i))...)
			}
		}
	case reflect.Struct:
		if v.Type() == durationType {
			return nil
		}
		for _, f := range fieldsOf(v.Type()) {
			fv, fp := v.Field(f.index), join(path, f.name)
			switch {
			case fv.Type() == componentType:
				if b := fv.Interface().(Component); b.Config != nil {
					errs = append(errs, checkTags(file, join(fp, b.Kind), reflect.ValueOf(b.Config))...)
				}
			case fv.Type().Kind() == reflect.Slice && fv.Type().Elem() == componentType:
				for i := range fv.Len() {
					if b := fv.Index(i).Interface().(Component); b.Config != nil {
						errs = append(errs, checkTags(file, fmt.Sprintf("%s[%d]", fp, i), reflect.ValueOf(b.Config))...)
					}
				}
			case f.enum != nil && fv.Kind() == reflect.String && !slices.Contains(f.enum, fv.String()):
				add("bad value %q for %s; write one of: %s", fv.String(), fp, strings.Join(f.enum, ", "))
			case f.hasMin && fv.CanInt() && fv.Int() < f.min:
				add("%s must be at least %s, got %s", fp, f.minText, shown(fv))
			case f.hasMax && fv.CanInt() && fv.Int() > f.max:
				add("%s must be at most %s, got %s; write %s or less", fp, f.maxText, shown(fv), f.maxText)
			case fv.Type() == durationType && fv.Int() < 0:
				add("%s: duration %s is negative; write 0 or a positive duration", fp, fv.Interface().(Duration).D())
			default:
				errs = append(errs, checkTags(file, fp, fv)...)
			}
		}
	}
	return errs
}
