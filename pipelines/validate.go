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

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	sha256RE = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// Validate checks a spec against every rule of version 1: value ranges,
// allowed values, and the rules that span keys (exactly one source and one
// sink, delivery against the sink, topics or pattern, ...). Load and Parse
// have already run it; call it on a Spec built in Go. The error is an
// Errors.
func (s *Spec) Validate() error {
	var errs Errors
	if s.where == nil {
		errs = checkTags(s.File, "", reflect.ValueOf(s).Elem())
	}
	return append(errs, s.check()...).sort().err()
}

// checker reports problems at the position of a key path; a spec built in
// Go has no positions and its problems carry only the file name.
type checker struct {
	file string
	w    *positions
	errs Errors
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

// check runs the rules that need more than one key.
func (s *Spec) check() Errors {
	c := &checker{file: s.File, w: s.where}

	if c.ok("version") && c.set("version") && s.Version != 1 {
		c.at("version", "unsupported version %d; write version: 1 (the only version this sluice reads)", s.Version)
	}
	if c.ok("name") && c.set("name") {
		switch {
		case len(s.Name) > MaxNameLength:
			c.at("name", "name is %d characters, longer than %d; shorten it", len(s.Name), MaxNameLength)
		case !nameRE.MatchString(s.Name):
			c.at("name", "bad name %q: it becomes a directory, group id and metric label; use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit, e.g. name: %s", s.Name, suggestName(s.Name))
		}
	}
	s.checkOneOf(c, "source", reflect.ValueOf(&s.Source).Elem())
	s.checkOneOf(c, "sink", reflect.ValueOf(&s.Sink).Elem())

	if s.Sink.Stdout != nil && s.Delivery == ExactlyOnce && c.ok("delivery") {
		p := c.pos("sink.stdout", true)
		how := "(the default) "
		if c.w == nil || c.set("delivery") {
			p, how = c.pos("delivery", false), ""
		}
		c.add(p, "delivery: exactly-once %sis impossible with the stdout sink: it cannot take back output it printed before a crash; write delivery: at-least-once, or use a transactional sink: file, postgres or kafka", how)
	}

	if k := s.Source.Kafka; k != nil && c.ok("source.kafka") {
		s.checkKafka(c, k)
	}
	if k := s.Sink.Kafka; k != nil && c.ok("sink.kafka") {
		checkBrokers(c, "sink.kafka", k.Brokers)
		checkTopic(c, "sink.kafka.topic", k.Topic)
		checkTopic(c, "sink.kafka.checkpoint-topic", k.CheckpointTopic)
	}
	if f := s.Sink.File; f != nil && f.Roll != nil && c.ok("sink.file", "sink.file.roll", "sink.file.roll.bytes", "sink.file.roll.interval", "sink.file.roll.per-epoch") {
		checkRoll(c, f.Roll)
	}
	for i, t := range s.Transforms {
		p := fmt.Sprintf("transforms[%d]", i)
		if c.ok(p+".plugin") && strings.TrimSpace(t.Plugin) == "" {
			c.at(p+".plugin", "%s.plugin is empty; write a built-in plugin name or the path of a plugin executable, e.g. plugin: jsonpath", p)
		}
		if c.ok(p+".sha256") && t.SHA256 != "" && !sha256RE.MatchString(t.SHA256) {
			c.at(p+".sha256", "%s.sha256 must be 64 hex characters, got %d characters %q; write the output of sha256sum PLUGIN, or remove the key", p, len(t.SHA256), t.SHA256)
		}
	}
	if dl := s.DeadLetter; dl != nil && c.ok("dead-letter", "dead-letter.topic", "dead-letter.file") {
		switch {
		case dl.Topic != "" && dl.File != "":
			c.atKey("dead-letter.file", "dead-letter has both topic and file; keep exactly one: rejected records go to one place")
		case dl.Topic == "" && dl.File == "":
			c.at("dead-letter", "dead-letter needs a destination; write dead-letter: {topic: NAME} or {file: PATH}")
		case s.Sink.Stdout != nil:
			c.atKey("dead-letter", "the stdout sink cannot keep dead letters with its output; remove dead-letter, or use the file, postgres or kafka sink")
		case dl.Topic != "" && s.Sink.Kafka == nil && s.Source.Kafka == nil:
			c.atKey("dead-letter.topic", "dead-letter topics go to the pipeline's Kafka cluster, and this pipeline has no kafka source or sink; write dead-letter: {file: PATH}")
		case dl.Topic != "":
			checkTopic(c, "dead-letter.topic", dl.Topic)
		case s.Sink.Kafka != nil:
			c.atKey("dead-letter.file", "dead-letter: {file} cannot commit in the kafka sink's transaction; write dead-letter: {topic: NAME}")
		}
	}
	return c.errs
}

// checkOneOf enforces exactly one block in source or sink.
func (s *Spec) checkOneOf(c *checker, path string, v reflect.Value) {
	if !c.ok(path) || !c.set(path) {
		return
	}
	valid := fieldNames(fieldsOf(v.Type()))
	switch blocks := presentBlocks(v); len(blocks) {
	case 0:
		c.at(path, "%s has no block; write exactly one of: %s", path, strings.Join(valid, ", "))
	case 1:
	default:
		// Point at the block written last: the first one is usually the
		// intended one.
		last := path + "." + blocks[0]
		for _, b := range blocks[1:] {
			if p, q := c.pos(path+"."+b, true), c.pos(last, true); p.Line > q.Line || (p.Line == q.Line && p.Col > q.Col) {
				last = path + "." + b
			}
		}
		c.atKey(last, "%s has %d blocks (%s); a pipeline has exactly one %s, keep one of them", path, len(blocks), strings.Join(blocks, ", "), path)
	}
}

func (s *Spec) checkKafka(c *checker, k *KafkaSource) {
	const p = "source.kafka"
	if c.ok(p+".topics", p+".pattern") {
		switch {
		case len(k.Topics) > 0 && k.Pattern != "":
			c.atKey(p+".pattern", "kafka source has both topics and pattern; keep one: topics: [a, b] reads those topics, pattern: REGEX reads every matching topic")
		case len(k.Topics) == 0 && k.Pattern == "":
			c.at(p, "kafka source needs topics or pattern; write topics: [clicks] or pattern: \"clicks-.*\"")
		}
	}
	if c.ok(p+".pattern") && k.Pattern != "" {
		if _, err := regexp.Compile(k.Pattern); err != nil {
			c.at(p+".pattern", "pattern %q is not a valid regular expression (%v); write a Go regexp such as \"clicks-.*\"", k.Pattern, err)
		}
	}
	checkBrokers(c, p, k.Brokers)
	if c.ok(p+".block-interval") && k.BlockInterval.D() < MinBlockInterval {
		c.at(p+".block-interval", "block-interval %s is below the %s minimum: every block is fsynced to the write-ahead log; write block-interval: %s or more", k.BlockInterval.D(), MinBlockInterval, MinBlockInterval)
	}
	if c.ok(p+".wal", "delivery") && !k.WALEnabled() && s.Delivery == ExactlyOnce {
		c.at(p+".wal", "wal: false is impossible with delivery: exactly-once: without the write-ahead log a receiver cannot replay a batch after a crash; remove wal: false, or write delivery: at-least-once or at-most-once")
	}
}

// checkRoll rejects roll settings that contradict each other or would
// keep committed output hidden until the pipeline stops.
func checkRoll(c *checker, r *FileRoll) {
	const p = "sink.file.roll"
	// In a file, bytes and interval are set when written (absent ones hold
	// their defaults); in a spec built in Go, when not zero.
	written := func(key string, nonzero bool) bool {
		if c.w == nil {
			return nonzero
		}
		return c.set(p + "." + key)
	}
	if r.PerEpoch {
		for _, k := range []struct {
			key string
			set bool
		}{{"bytes", written("bytes", r.Bytes != 0)}, {"interval", written("interval", r.Interval != 0)}} {
			if k.set {
				c.atKey(p+"."+k.key, "%s.%s has no effect with per-epoch: true, which makes every epoch its own part file; remove %s, or remove per-epoch to roll by size and age", p, k.key, k.key)
			}
		}
		return
	}
	if r.Bytes == 0 && r.Interval == 0 {
		c.atKey(p, "%s has bytes: 0 and interval: 0, so committed output would stay hidden until the pipeline stops; set a limit such as interval: 1m or bytes: %d, or write per-epoch: true for one part file per epoch", p, DefaultRollBytes)
	}
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

// checkBrokers accepts [builtin] or a list of host:port addresses.
func checkBrokers(c *checker, block string, brokers []string) {
	p := block + ".brokers"
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

// checkTags applies the enum and min tags to a Spec built in Go; for a file
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
			case f.enum != nil && fv.Kind() == reflect.String && !slices.Contains(f.enum, fv.String()):
				add("bad value %q for %s; write one of: %s", fv.String(), fp, strings.Join(f.enum, ", "))
			case f.hasMin && fv.CanInt() && fv.Int() < f.min:
				add("%s must be at least %d, got %d", fp, f.min, fv.Int())
			case fv.Type() == durationType && fv.Int() < 0:
				add("%s: duration %s is negative; write 0 or a positive duration", fp, fv.Interface().(Duration).D())
			default:
				errs = append(errs, checkTags(file, fp, fv)...)
			}
		}
	}
	return errs
}

// fill sets defaults that depend on other keys.
func (s *Spec) fill() {
	if k := s.Source.Kafka; k != nil && k.Group == "" {
		k.Group = s.Name
	}
}
