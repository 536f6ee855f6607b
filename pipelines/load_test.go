package pipelines_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/components"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/plugins/host"
	"github.com/sluicehq/sluice/sinks/file"
	"github.com/sluicehq/sluice/sinks/postgres"
	"github.com/sluicehq/sluice/sinks/stdout"
	"github.com/sluicehq/sluice/sources/generate"
	"github.com/sluicehq/sluice/sources/kafka"
)

// builtin is the table of kinds sluice reads pipeline files with.
var builtin = components.Builtin.Kinds()

// Typed views of a parsed spec's blocks.
func kafkaSource(s *pipelines.Spec) *kafka.Settings { return s.Source.Config.(*kafka.Settings) }
func generateOf(s *pipelines.Spec) *generate.Config { return s.Source.Config.(*generate.Config) }
func fileSink(s *pipelines.Spec) *file.Config       { return s.Sink.Config.(*file.Config) }
func step(s *pipelines.Spec, i int) *host.Step      { return s.Transforms[i].Config.(*host.Step) }

// noEnv is an environment with nothing set.
func noEnv(string) (string, bool) { return "", false }

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// doc joins lines into a file, so tests can count lines and columns.
func doc(lines ...string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

func mustParse(t *testing.T, data []byte, env func(string) (string, bool)) *pipelines.Spec {
	t.Helper()
	s, err := pipelines.Parse("t.yaml", data, env, builtin)
	if err != nil {
		t.Fatalf("Parse: unexpected error:\n%v", err)
	}
	return s
}

func parseErrs(t *testing.T, data []byte, env func(string) (string, bool)) pipelines.Errors {
	t.Helper()
	s, err := pipelines.Parse("t.yaml", data, env, builtin)
	if err == nil {
		t.Fatalf("Parse: no error, spec %+v", s)
	}
	if s != nil {
		t.Errorf("Parse returned both a spec and an error")
	}
	var errs pipelines.Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		t.Fatalf("Parse error is %T %v, want non-empty pipelines.Errors", err, err)
	}
	return errs
}

// Every error kind, with the exact place and the gist of the message. Each
// input has exactly one mistake and must give exactly one line.
func TestParseErrors(t *testing.T) {
	head := []string{"version: 1", "name: t"}            // lines 1-2
	gen := []string{"source:", "  generate: {count: 1}"} // lines 3-4 when after head
	file := []string{"sink:", "  file: {path: ./out}"}
	with := func(lines ...string) []byte {
		all := append(append([]string{}, head...), gen...)
		all = append(all, file...)
		return doc(append(all, lines...)...) // extra lines start at line 7
	}
	kafka := func(lines ...string) []byte {
		all := append(append([]string{}, head...), "source:", "  kafka:") // kafka keys from line 5
		all = append(all, lines...)
		all = append(all, file...)
		return doc(all...)
	}
	tests := []struct {
		name      string
		data      []byte
		env       map[string]string
		line, col int
		msg       string
	}{
		{"unknown key with suggestion", with("batch:", "  intreval: 1s"), nil, 8, 3,
			`unknown key "intreval" in batch; did you mean "interval"? valid keys: interval, max-records-per-partition`},
		{"unknown top-level key", with("colour: red"), nil, 7, 1,
			`unknown key "colour" at the top level; valid keys: version, name, source, batch, delivery, transforms, sink, dead-letter`},
		{"unknown source", doc("version: 1", "name: t", "source:", "  generator: {}", "sink: {stdout: {}}", "delivery: at-least-once"), nil, 4, 3,
			`unknown key "generator" in source; did you mean "generate"?`},
		{"wrong type list for int", doc("version: 1", "name: t", "source:", "  generate: {count: [1]}", "sink: {stdout: {}}", "delivery: at-most-once"), nil, 4, 21,
			`source.generate.count must be a whole number, got a list; write count: 1`},
		{"quoted number", doc("version: 1", "name: t", "source:", "  generate:", `    partitions: "4"`, "sink: {stdout: {}}", "delivery: at-most-once"), nil, 5, 17,
			`source.generate.partitions must be a whole number, got "4"; remove the quotes: write 4`},
		{"scalar for block", with("batch: 5"), nil, 7, 8,
			`batch must be a mapping, got the number 5; write a mapping with keys interval, max-records-per-partition`},
		{"string for list", kafka("    topics: clicks"), nil, 5, 13,
			`source.kafka.topics must be a list, got "clicks"; write topics: [a, b]`},
		{"bool", kafka("    topics: [a]", "    tls: {skip-verify: yes}"), nil, 6, 24,
			`source.kafka.tls.skip-verify must be true or false, got "yes"`},
		{"map of strings", doc("version: 1", "name: t", "source: {generate: {}}", "sink:", "  postgres: {dsn: x, table: t, columns: [a]}"), nil, 5, 41,
			`sink.postgres.columns must be a mapping, got a list`},
		{"int out of range", doc("version: 1", "name: t", "source:", "  generate: {partitions: 3000000000}", "sink: {file: {path: x}}"), nil, 4, 26,
			`source.generate.partitions must be at most 10000, got 3000000000; write partitions: 10000 or less`},
		{"past int64", doc("version: 1", "name: t", "source:", "  generate: {count: 99999999999999999999}", "sink: {file: {path: x}}"), nil, 4, 21,
			`source.generate.count must be at most 1_000_000_000_000_000, got 99999999999999999999; write count: 1_000_000_000_000_000 or less (0 = unbounded)`},
		{"below min", with("transforms:", "  - {plugin: ./p, workers: 0}"), nil, 8, 28,
			`transforms[0].workers must be at least 1, got 0; write workers: 1`},
		{"negative count", doc("version: 1", "name: t", "source:", "  generate: {count: -1}", "sink: {file: {path: x}}"), nil, 4, 21,
			`source.generate.count must be at least 0, got -1; write count: 1 or count: 0`},
		{"missing required top-level", doc("version: 1", "source: {generate: {}}", "sink: {file: {path: x}}"), nil, 1, 1,
			`missing required key "name" at the top level; add name: my-pipeline`},
		{"missing required nested", doc("version: 1", "name: t", "source: {generate: {}}", "sink:", "  file:", "    format: raw"), nil, 6, 5,
			`missing required key "path" in sink.file; add path: ./out`},
		{"required but empty", doc("version: 1", "name: t", "source: {generate: {}}", "sink:", "  file:", "    path:"), nil, 6, 5,
			`sink.file.path is empty; write path: ./out`},
		{"bad duration", with("batch: {interval: 1 sec}"), nil, 7, 19,
			`batch.interval: bad duration "1 sec"; write a Go duration such as interval: 200ms, 1s or 1m30s`},
		{"duration without unit", with("batch: {interval: 5}"), nil, 7, 19,
			`batch.interval: 5 has no unit; write interval: 5s (or ms, m, h)`},
		{"negative duration", with("transforms: [{plugin: ./p, timeout: -2s}]"), nil, 7, 37,
			`transforms[0].timeout: duration -2s is negative`},
		{"plugin state without exactly-once", with("delivery: at-least-once", "transforms: [{plugin: ./p, state: true}]"), nil, 8, 15,
			`the plugin step keeps state that commits with the sink's output, which takes delivery: exactly-once, not at-least-once`},
		{"state on a built-in", with("transforms: [{plugin: uppercase, state: true}]"), nil, 7, 34,
			`the built-in "uppercase" keeps no state; remove state: true`},
		{"bad delivery", with("delivery: exactly_once"), nil, 7, 11,
			`bad value "exactly_once" for delivery; did you mean "exactly-once"? write one of: exactly-once, at-least-once, at-most-once`},
		{"bad mode", kafka("    topics: [a]", "    mode: recevier"), nil, 6, 11,
			`bad value "recevier" for source.kafka.mode; did you mean "receiver"?`},
		{"bad start", kafka("    topics: [a]", "    start: newest"), nil, 6, 12,
			`bad value "newest" for source.kafka.start; write one of: earliest, latest`},
		{"bad on-data-loss", kafka("    topics: [a]", "    on-data-loss: ignore"), nil, 6, 19,
			`bad value "ignore" for source.kafka.on-data-loss; write one of: fail, skip`},
		{"bad format", doc("version: 1", "name: t", "source: {generate: {}}", "sink:", "  file: {path: x, format: json}"), nil, 5, 27,
			`bad value "json" for sink.file.format; did you mean "jsonl"?`},
		{"roll per-epoch with bytes", doc("version: 1", "name: t", "source: {generate: {}}", "sink:", "  file: {path: x, roll: {per-epoch: true, bytes: 1024}}"), nil, 5, 43,
			`sink.file.roll.bytes has no effect with per-epoch: true, which makes every epoch its own part file; remove bytes, or remove per-epoch to roll by size and age`},
		{"roll per-epoch with interval", doc("version: 1", "name: t", "source: {generate: {}}", "sink:", "  file:", "    path: x", "    roll:", "      per-epoch: true", "      interval: 0"), nil, 9, 7,
			`sink.file.roll.interval has no effect with per-epoch: true`},
		{"roll that never rolls", doc("version: 1", "name: t", "source: {generate: {}}", "sink:", "  file: {path: x, roll: {bytes: 0, interval: 0}}"), nil, 5, 19,
			`sink.file.roll has bytes: 0 and interval: 0, so committed output would stay hidden until the pipeline stops; set a limit such as interval: 1m or bytes: 134217728, or write per-epoch: true for one part file per epoch`},
		{"roll as a word", doc("version: 1", "name: t", "source: {generate: {}}", "sink:", "  file: {path: x, roll: none}"), nil, 5, 25,
			`sink.file.roll must be a mapping, got "none"; write a mapping with keys bytes, interval, per-epoch`},
		{"roll negative bytes", doc("version: 1", "name: t", "source: {generate: {}}", "sink:", "  file: {path: x, roll: {bytes: -1}}"), nil, 5, 33,
			`sink.file.roll.bytes must be at least 0, got -1; write bytes: 1 or bytes: 0`},
		{"bad sasl mechanism", kafka("    topics: [a]", "    brokers: [k1:9092]", "    sasl: {mechanism: scram, username: u, password: p}"), nil, 7, 23,
			`bad value "scram" for source.kafka.sasl.mechanism; write one of: plain, scram-sha-256, scram-sha-512`},
		{"duplicate key", with("batch:", "  interval: 1s", "  interval: 2s"), nil, 9, 3,
			`duplicate key "interval" in batch (first at line 8); keep one of them`},
		{"version", doc("version: 2", "name: t", "source: {generate: {}}", "sink: {file: {path: x}}"), nil, 1, 10,
			`unsupported version 2; write version: 1`},
		{"name", doc("version: 1", "name: My_Pipe", "source: {generate: {}}", "sink: {file: {path: x}}"), nil, 2, 7,
			`bad name "My_Pipe"`},
		{"no source block", doc("version: 1", "name: t", "source: {}", "sink: {file: {path: x}}"), nil, 3, 9,
			`source has no block; write exactly one of: generate, kafka`},
		{"two source blocks", doc("version: 1", "name: t", "source:", "  generate: {}", "  kafka: {topics: [a]}", "sink: {file: {path: x}}"), nil, 5, 3,
			`source has 2 blocks (generate, kafka); a pipeline has exactly one source, keep one of them`},
		{"two sink blocks", doc("version: 1", "name: t", "source: {generate: {}}", "delivery: at-least-once", "sink:", "  stdout: {}", "  file: {path: x}"), nil, 7, 3,
			`sink has 2 blocks (file, stdout)`},
		{"exactly-once stdout explicit", doc("version: 1", "name: t", "source: {generate: {}}", "delivery: exactly-once", "sink:", "  stdout:"), nil, 4, 11,
			`delivery: exactly-once is impossible with the stdout sink: it cannot take back output it wrote before a crash; write delivery: at-least-once, or use a transactional sink: file, postgres or kafka`},
		{"exactly-once stdout default", doc("version: 1", "name: t", "source: {generate: {}}", "sink:", "  stdout:"), nil, 5, 3,
			`delivery: exactly-once (the default) is impossible with the stdout sink`},
		{"topics and pattern", kafka("    topics: [a]", `    pattern: "a.*"`), nil, 6, 5,
			`kafka source has both topics and pattern; keep one`},
		{"neither topics nor pattern", kafka("    mode: direct"), nil, 5, 5,
			`kafka source needs topics or pattern; write topics: [clicks] or pattern: "clicks-.*"`},
		{"bad pattern", kafka(`    pattern: "a(["`), nil, 5, 14,
			`pattern "a([" is not a valid regular expression`},
		{"bad broker", kafka("    topics: [a]", "    brokers: [kafka-1]"), nil, 6, 15,
			`broker "kafka-1" is not host:port`},
		{"empty brokers", kafka("    topics: [a]", "    brokers: []"), nil, 6, 14,
			`brokers is empty; write brokers: [builtin]`},
		{"source broker mixed", kafka("    topics: [a]", "    brokers: [builtin, k:9092]"), nil, 6, 15,
			`brokers mixes builtin with external brokers`},
		{"kafka sink bad topic", doc("version: 1", "name: t", "source: {generate: {}}", "sink:", "  kafka: {topic: \"a b\"}"), nil, 5, 18,
			`bad topic name "a b": Kafka allows letters, digits, '.', '_' and '-'`},
		{"kafka sink bad broker", doc("version: 1", "name: t", "source: {generate: {}}", "sink:", "  kafka: {topic: o, brokers: [k]}"), nil, 5, 31,
			`broker "k" is not host:port`},
		{"dead-letter topic without kafka", with("dead-letter: {topic: dlq}"), nil, 7, 15,
			`dead-letter topics go to the pipeline's Kafka cluster, and this pipeline has no source or sink on one`},
		{"dead-letter with stdout", doc("version: 1", "name: t", "source: {generate: {}}", "delivery: at-least-once", "sink: {stdout: {}}", "dead-letter: {file: d}"), nil, 6, 1,
			`the stdout sink cannot keep dead letters with its output`},
		{"dead-letter file with kafka sink", doc("version: 1", "name: t", "source: {generate: {}}", "sink: {kafka: {topic: o}}", "dead-letter: {file: d}"), nil, 5, 15,
			`dead-letter: {file} cannot commit in the kafka sink's transaction; write dead-letter: {topic: NAME}`},
		{"block-interval", kafka("    topics: [a]", "    mode: receiver", "    block-interval: 20ms"), nil, 7, 21,
			`block-interval 20ms is below the 50ms minimum`},
		{"wal false exactly-once", kafka("    topics: [a]", "    mode: receiver", "    wal: false"), nil, 7, 10,
			`wal: false is impossible with delivery: exactly-once: without the write-ahead log a receiver cannot replay a batch`},
		{"sha256", with("transforms:", "  - plugin: ./p", "    sha256: deadbeef"), nil, 9, 13,
			`transforms[0].sha256 must be 64 hex characters, got 8 characters "deadbeef"`},
		{"empty plugin", with("transforms:", `  - plugin: ""`), nil, 8, 13,
			`transforms[0].plugin is empty`},
		{"dead-letter both", with("dead-letter:", "  topic: dlq", "  file: ./dlq"), nil, 9, 3,
			`dead-letter has both topic and file; keep exactly one`},
		{"dead-letter neither", with("dead-letter: {}"), nil, 7, 14,
			`dead-letter needs a destination; write dead-letter: {topic: NAME}, {file: PATH} (file sink) or {table: NAME} (postgres sink)`},
		{"dead-letter file with postgres sink", doc("version: 1", "name: t", "source: {generate: {}}", "sink: {postgres: {dsn: x, table: t}}", "dead-letter: {file: ./dlq}"), nil, 5, 15,
			`the postgres sink keeps dead letters in a table of its database, in the batch's transaction, never in files; write dead-letter: {table: sluice_dead_letters}, or {topic: NAME} to forward them to Kafka`},
		{"dead-letter table with file sink", with("dead-letter: {table: dl}"), nil, 7, 15,
			`the file sink keeps dead letters in files, not in a table; write dead-letter: {file: PATH}`},
		{"dead-letter table with schema", doc("version: 1", "name: t", "source: {generate: {}}", "sink: {postgres: {dsn: x, table: t}}", "dead-letter: {table: s.dl}"), nil, 5, 22,
			`dead-letter.table "s.dl" names a schema`},
		{"dead-letter table and topic", doc("version: 1", "name: t", "source: {generate: {}}", "sink: {postgres: {dsn: x, table: t}}", "dead-letter: {topic: d, table: dl}"), nil, 5, 25,
			`dead-letter has both topic and table; keep exactly one`},
		{"postgres column cast", doc("version: 1", "name: t", "source: {generate: {}}", "sink: {postgres: {dsn: x, table: t, columns: {a: value.a::money}}}"), nil, 4, 50,
			`sink.postgres.columns: a: "money" after :: is not a type a column can take here`},
		{"unset variable", doc("version: 1", "name: t", "source: {generate: {}}", "sink:", "  file: {path: \"/data/${OUT_DIR}/x\"}"), nil, 5, 23,
			`environment variable OUT_DIR is not set; set it, or give a default with ${OUT_DIR:-VALUE}`},
		{"bad variable name", doc("version: 1", "name: t", "source: {generate: {}}", "sink:", "  file:", "    path: a${1X}"), nil, 6, 12,
			`bad variable name "1X" in ${1X}`},
		{"unterminated variable", doc("version: 1", "name: t", "source: {generate: {}}", "sink:", "  file:", "    path: ${X"), nil, 6, 11,
			`"${" is not closed`},
		{"alias to wrong type", doc("version: 1", "name: &n t", "source: {generate: {count: *n}}", "sink: {file: {path: x}}"), nil, 2, 7,
			`source.generate.count must be a whole number, got "t"`},
		{"bad merge", doc("version: 1", "name: t", "source: {generate: {<<: 5}}", "sink: {file: {path: x}}"), nil, 3, 25,
			`<< in source.generate must merge a mapping`},
		{"non-scalar key", doc("version: 1", "name: t", "? [a]", ": 1", "source: {generate: {}}", "sink: {file: {path: x}}"), nil, 3, 3,
			`a key at the top level must be a plain name, got a list`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := noEnv
			if tt.env != nil {
				env = envOf(tt.env)
			}
			errs := parseErrs(t, tt.data, env)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), errs)
			}
			e := errs[0]
			if e.File != "t.yaml" || e.Line != tt.line || e.Col != tt.col || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got  %v\nwant t.yaml:%d:%d: ...%s...", e, tt.line, tt.col, tt.msg)
			}
			if !strings.HasPrefix(e.Error(), fmt.Sprintf("t.yaml:%d:%d: ", tt.line, tt.col)) {
				t.Errorf("Error() = %q, want FILE:LINE:COL: prefix", e.Error())
			}
		})
	}
}

// A broken file reports every problem in one run, in file order.
func TestParseReportsAllErrors(t *testing.T) {
	data := doc(
		"version: 1",
		"name: clicks",
		"source:",
		"  kafka:",
		"    topics: [clicks]",
		"    mode: reciever",     // 6: enum
		"    block-interval: 10", // 7: duration without unit
		"batch:",
		"  intreval: 1s",                 // 9: unknown key
		"  max-records-per-partition: 0", // 10: min
		"transforms:",
		"  - workers: 2", // 12: missing plugin
		"sink:",
		"  stdout: {format: text}", // 14: stdout with exactly-once (default), 14:20 enum
		"dead-letter:",
		"  file: ${DLQ_FILE}", // 16: unset variable
	)
	errs := parseErrs(t, data, noEnv)
	want := []string{
		"t.yaml:6:11: bad value",
		"t.yaml:7:21: source.kafka.block-interval: 10 has no unit",
		"t.yaml:9:3: unknown key \"intreval\"",
		"t.yaml:10:30: batch.max-records-per-partition must be at least 1",
		"t.yaml:12:5: transforms[0] names no step kind; write a mapping with one of the keys plugin, aggregate, dedupe, repartition",
		"t.yaml:14:3: delivery: exactly-once (the default) is impossible with the stdout sink",
		"t.yaml:14:20: bad value \"text\" for sink.stdout.format",
		"t.yaml:16:9: environment variable DLQ_FILE is not set",
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), errs)
	}
	for i, w := range want {
		if !strings.HasPrefix(errs[i].Error(), w) {
			t.Errorf("error %d = %q, want prefix %q", i, errs[i], w)
		}
	}
	if lines := strings.Split(errs.Error(), "\n"); len(lines) != len(want) {
		t.Errorf("pipelines.Errors.Error() has %d lines, want one per error", len(lines))
	}
}

// Problems with the file as a whole: exactly one clear line each.
func TestParseWholeFile(t *testing.T) {
	big := append([]byte("version: 1\nname: t\n# "), make([]byte, pipelines.MaxFileSize)...)
	tests := []struct {
		name      string
		data      []byte
		line, col int
		msg       string
	}{
		{"empty", nil, 1, 1, "file is empty"},
		{"blank", []byte("\n  \n\t\n"), 1, 1, "file is empty"},
		{"only comments", []byte("# nothing here\n"), 1, 1, "no YAML content, only comments"},
		{"too large", big, 1, 1, "larger than 1048576 bytes"},
		{"not yaml", []byte("version: 1\nname: [t\nsource: x\n"), 2, 1, "not valid YAML"},
		{"tab indentation", []byte("version: 1\nsource:\n\tgenerate: {}\n"), 3, 1, "not valid YAML: found character that cannot start any token"},
		{"control characters", []byte("version: 1\nname: \x00\x01\n"), 2, 7, "not valid YAML: control character 0x0"},
		{"utf-16 junk", []byte{0xff, 0xfe, 0x00, 0x01, ':', '\n'}, 1, 1, "a pipeline file must be a mapping"},
		{"unquoted variable in flow mapping", []byte("version: 1\nsink: {file: {path: ${DIR}}}\n"), 2, 1, `quote a ${VAR} inside { } or [ ]: write "${VAR}"`},
		{"list document", []byte("- version: 1\n- name: t\n"), 1, 1, "a pipeline file must be a mapping of keys, got a list"},
		{"scalar document", []byte("hello\n"), 1, 1, "a pipeline file must be a mapping of keys, got \"hello\""},
		{"two documents", []byte("version: 1\n---\n\nversion: 1\n"), 4, 1, "more than one YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseErrs(t, tt.data, noEnv)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), errs)
			}
			if e := errs[0]; e.Line != tt.line || e.Col != tt.col || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got  %v\nwant t.yaml:%d:%d: ...%s...", e, tt.line, tt.col, tt.msg)
			}
		})
	}
}

func TestParseLeadingAndTrailingDocumentMarkers(t *testing.T) {
	s := mustParse(t, []byte("---\nversion: 1\nname: t\nsource: {generate: {}}\nsink: {file: {path: x}}\n---\n"), noEnv)
	if s.Name != "t" {
		t.Errorf("name = %q", s.Name)
	}
}

func TestDefaults(t *testing.T) {
	s := mustParse(t, doc(
		"version: 1",
		"name: clicks",
		"source:",
		"  kafka: {topics: [clicks]}",
		"transforms:",
		"  - plugin: ./jsonpath",
		"sink:",
		"  file: {path: out}",
	), noEnv)
	k := kafkaSource(s)
	checks := []struct {
		name      string
		got, want any
	}{
		{"delivery", s.Delivery, pipelines.ExactlyOnce},
		{"batch.interval", s.Batch.Interval.D(), time.Second},
		{"batch.max-records-per-partition", s.Batch.MaxRecordsPerPartition, 50000},
		{"kafka.brokers", fmt.Sprint(k.Brokers), "[builtin]"},
		{"kafka.mode", k.Mode, "direct"},
		{"kafka.start", k.Start, "earliest"},
		{"kafka.group (the pipeline name, filled in when built)", k.Group, ""},
		{"kafka.block-interval", k.BlockInterval.D(), 200 * time.Millisecond},
		{"kafka.on-data-loss", k.OnDataLoss, "fail"},
		{"kafka.wal", k.WALEnabled(), true},
		{"transform.workers", step(s, 0).Workers, 1},
		{"transform.timeout", step(s, 0).Timeout.D(), 30 * time.Second},
		{"sink.file.format", fileSink(s).Format, "jsonl"},
		{"source kind", s.SourceKind(), "kafka"},
		{"sink kind", s.SinkKind(), "file"},
		{"file", s.File, "t.yaml"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	// An empty block means that block with all its defaults.
	s = mustParse(t, doc("version: 1", "name: g", "source:", "  generate:", "delivery: at-least-once", "sink:", "  stdout:"), noEnv)
	if g := generateOf(s); g.Topic != "generate" || g.Partitions != 1 || g.Keys != 1 || g.Count != 0 {
		t.Errorf("generate defaults = %+v", g)
	}
	if o, ok := s.Sink.Config.(*stdout.Config); !ok || o.Format != "raw" || s.SinkKind() != "stdout" {
		t.Errorf("stdout defaults = %+v", s.Sink.Config)
	}
	// The file sink rolls by default: an absent roll block is nil (the sink
	// applies file.DefaultRollBytes and file.DefaultRollInterval), a present one
	// takes the defaults for the keys it leaves out.
	if s := mustParse(t, doc("version: 1", "name: f", "source: {generate: {}}", "sink: {file: {path: x}}"), noEnv); fileSink(s).Roll != nil {
		t.Errorf("absent roll = %+v, want nil", fileSink(s).Roll)
	}
	for _, tc := range []struct {
		roll string
		want file.RollConfig
	}{
		{"{}", file.RollConfig{Bytes: file.DefaultRollBytes, Interval: pipelines.Duration(file.DefaultRollInterval)}},
		{"", file.RollConfig{Bytes: file.DefaultRollBytes, Interval: pipelines.Duration(file.DefaultRollInterval)}},
		{"{bytes: 1000}", file.RollConfig{Bytes: 1000, Interval: pipelines.Duration(file.DefaultRollInterval)}},
		{"{interval: 0}", file.RollConfig{Bytes: file.DefaultRollBytes}},
		{"{per-epoch: true}", file.RollConfig{Bytes: file.DefaultRollBytes, Interval: pipelines.Duration(file.DefaultRollInterval), PerEpoch: true}},
	} {
		s := mustParse(t, doc("version: 1", "name: f", "source: {generate: {}}", "sink: {file: {path: x, roll: "+tc.roll+"}}"), noEnv)
		if r := fileSink(s).Roll; r == nil || *r != tc.want {
			t.Errorf("roll: %s = %+v, want %+v", tc.roll, r, tc.want)
		}
	}

	// Set values win over defaults; an explicit null means "not set".
	s = mustParse(t, doc("version: 1", "name: g", "source: {generate: {partitions: 8, keys: ~}}", "batch: {interval: 0}", "sink: {file: {path: x, format: raw}}"), noEnv)
	if generateOf(s).Partitions != 8 || generateOf(s).Keys != 1 || s.Batch.Interval != 0 || fileSink(s).Format != "raw" {
		t.Errorf("got %+v %+v %+v", generateOf(s), s.Batch, fileSink(s))
	}
}

func TestDecodeValues(t *testing.T) {
	s := mustParse(t, doc(
		"version: 1",
		"name: v",
		"source:",
		"  generate:",
		"    count: 1e6",
		"    partitions: 0x10",
		"    keys: 1_000",
		"transforms:",
		"  - &first",
		"    plugin: ./bin/enrich",
		"    workers: 3",
		"    timeout: 1m30s",
		"    settings:",
		"      field: user.id",
		"      n: 3",
		"      ratio: 0.5",
		"      on: true",
		"      none: ~",
		"      list: [a, 1, {b: c}]",
		"  - <<: *first",
		"    plugin: ./jsonpath",
		"sink:",
		"  postgres:",
		"    dsn: postgres://localhost/db",
		"    table: clicks",
		"    columns: {id: key, body: value::jsonb}",
		"    upsert-key: [id]",
		"    create-table: true",
	), noEnv)
	if g := generateOf(s); g.Count != 1_000_000 || g.Partitions != 16 || g.Keys != 1000 {
		t.Errorf("generate = %+v", g)
	}
	t0, t1 := step(s, 0), step(s, 1)
	if t0.Plugin != "./bin/enrich" || t0.Workers != 3 || t0.Timeout.D() != 90*time.Second {
		t.Errorf("transforms[0] = %+v", t0)
	}
	wantSettings := "map[field:user.id list:[a 1 map[b:c]] n:3 none:<nil> on:true ratio:0.5]"
	if got := fmt.Sprint(t0.Settings); got != wantSettings {
		t.Errorf("settings = %s, want %s", got, wantSettings)
	}
	if _, ok := t0.Settings["n"].(int); !ok {
		t.Errorf("settings.n is %T, want int", t0.Settings["n"])
	}
	// The merge brings workers and settings; the transform's own plugin wins.
	if t1.Plugin != "./jsonpath" || t1.Workers != 3 || t1.Settings["field"] != "user.id" {
		t.Errorf("transforms[1] = %+v", t1)
	}
	pg := s.Sink.Config.(*postgres.Config)
	if pg.Columns["body"] != "value::jsonb" || fmt.Sprint(pg.UpsertKey) != "[id]" || !pg.CreateTable {
		t.Errorf("postgres = %+v", pg)
	}
}

func TestEnvInterpolation(t *testing.T) {
	env := envOf(map[string]string{"N": "250", "DIR": "/data", "EMPTY": "", "PG_DSN": "postgres://u@h/db"})
	s := mustParse(t, doc(
		"version: 1",
		"name: ${NAME:-env-test}",
		"source:",
		"  generate:",
		"    count: ${N}",
		"    partitions: ${PARTS:-4}",
		"    topic: 't-${EMPTY:-x}'",
		"batch:",
		"  interval: ${INTERVAL:-250ms}",
		"sink:",
		"  file:",
		"    path: ${DIR}/out/$$HOME/${EMPTY}end$",
	), env)
	checks := []struct {
		name      string
		got, want any
	}{
		{"name from default", s.Name, "env-test"},
		{"count typed as a number", generateOf(s).Count, int64(250)},
		{"partitions from default", generateOf(s).Partitions, int32(4)},
		{"empty value takes :- default", generateOf(s).Topic, "t-x"},
		{"duration from default", s.Batch.Interval.D(), 250 * time.Millisecond},
		{"$$ escapes, lone $ kept, empty var expands to empty", fileSink(s).Path, "/data/out/$HOME/end$"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}

	// A quoted ${N} stays a string, as "250" would.
	errs := parseErrs(t, doc("version: 1", "name: t", "source: {generate: {count: \"${N}\"}}", "sink: {file: {path: x}}"), env)
	if len(errs) != 1 || errs[0].Line != 3 || errs[0].Col != 28 || !strings.Contains(errs[0].Msg, "remove the quotes") {
		t.Errorf("quoted ${N} into a number: %v", errs)
	}
	// Keys are not interpolated.
	errs = parseErrs(t, doc("version: 1", "name: t", "source: {generate: {}}", "sink: {file: {path: x}}", "${KEY}: 1"), envOf(map[string]string{"KEY": "delivery"}))
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, `unknown key "${KEY}"`) {
		t.Errorf("interpolated key: %v", errs)
	}
	// Two unset variables in one value: two errors, each at its column.
	errs = parseErrs(t, doc("version: 1", "name: t", "source: {generate: {}}", "sink:", "  file:", "    path: ${A}-${B}"), noEnv)
	if len(errs) != 2 || errs[0].Col != 11 || errs[1].Col != 16 {
		t.Errorf("two unset variables: %v", errs)
	}
}

// An alias bomb stops at the value budget with one line.
func TestAliasBomb(t *testing.T) {
	lines := []string{"version: 1", "name: t", "source: {generate: {}}", "sink: {file: {path: x}}", "transforms:", "  - plugin: ./p", "    settings:", "      a0: &a0 [x, x, x, x, x, x, x, x, x, x]"}
	for i := 1; i < 9; i++ {
		lines = append(lines, fmt.Sprintf("      a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1))
	}
	errs := parseErrs(t, doc(lines...), noEnv)
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "through aliases") {
		t.Errorf("got %v", errs)
	}
	// A mapping that merges itself must not recurse forever.
	errs = parseErrs(t, doc("version: 1", "name: t", "source: {generate: {}}", "sink: {file: {path: x}}", "transforms:", "  - plugin: ./p", "    settings: &s {a: 1, b: *s}"), noEnv)
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "nested more than") {
		t.Errorf("self-referencing alias: %v", errs)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, doc("version: 1", "name: t", "source: {generate: {}}", "sink: {file: {path: x}}"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := pipelines.Load(good, builtin)
	if err != nil || s.File != good {
		t.Fatalf("pipelines.Load(good, builtin) = %+v, %v", s, err)
	}

	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, 3*pipelines.MaxFileSize), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, msg string }{
		{filepath.Join(dir, "missing.yaml"), "cannot read the pipeline file"},
		{dir, "is a directory"},
		{big, "larger than"},
	} {
		_, err := pipelines.Load(tc.path, builtin)
		var errs pipelines.Errors
		if !errors.As(err, &errs) || len(errs) != 1 || errs[0].File != tc.path || !strings.Contains(errs[0].Msg, tc.msg) {
			t.Errorf("pipelines.Load(%s, builtin) = %v, want one error containing %q", tc.path, err, tc.msg)
		}
	}
}

func TestValidateGoSpec(t *testing.T) {
	s := &pipelines.Spec{
		Version:  1,
		Name:     "built",
		Delivery: pipelines.ExactlyOnce,
		Source:   pipelines.Component{Kind: "generate", Config: &generate.Config{Partitions: 0}},
		Sink:     pipelines.Component{Kind: "stdout", Config: &stdout.Config{Format: "raw"}},
		Batch:    pipelines.Batch{MaxRecordsPerPartition: 1},
	}
	err := s.Validate(builtin)
	var errs pipelines.Errors
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("Validate = %v, want 2 errors", err)
	}
	if got := err.Error(); !strings.Contains(got, "source.generate.partitions must be at least 1") || !strings.Contains(got, "impossible with the stdout sink") {
		t.Errorf("Validate = %v", got)
	}
	s.Delivery, generateOf(s).Partitions = pipelines.AtLeastOnce, 1
	if err := s.Validate(builtin); err != nil {
		t.Errorf("Validate(fixed) = %v", err)
	}
}

// The default tags of file.RollConfig, which the loader and the README reference
// read, say what the named constants say.
func TestRollDefaultTagsMatchConstants(t *testing.T) {
	var r file.RollConfig
	pipelines.SetDefaults(&r)
	if r.Bytes != file.DefaultRollBytes || r.Interval.D() != file.DefaultRollInterval || r.PerEpoch {
		t.Fatalf("file.RollConfig tag defaults = %+v, want bytes %d, interval %s, per-epoch false", r, file.DefaultRollBytes, file.DefaultRollInterval)
	}
}

// A roll built in Go is checked like one read from a file: 0 is "no such
// condition", so conflicts are non-zero values.
func TestValidateGoRoll(t *testing.T) {
	spec := func(r *file.RollConfig) *pipelines.Spec {
		return &pipelines.Spec{Version: 1, Name: "built", Delivery: pipelines.ExactlyOnce, Batch: pipelines.Batch{MaxRecordsPerPartition: 1},
			Source: pipelines.Component{Kind: "generate", Config: &generate.Config{Partitions: 1}},
			Sink:   pipelines.Component{Kind: "file", Config: &file.Config{Path: "x", Format: "raw", Roll: r}}}
	}
	for _, tc := range []struct {
		roll *file.RollConfig
		want string // "" = valid
	}{
		{nil, ""},
		{&file.RollConfig{PerEpoch: true}, ""},
		{&file.RollConfig{Bytes: 1 << 20}, ""},
		{&file.RollConfig{Interval: pipelines.Duration(time.Second)}, ""},
		{&file.RollConfig{}, "sink.file.roll has bytes: 0 and interval: 0"},
		{&file.RollConfig{PerEpoch: true, Interval: pipelines.Duration(time.Second)}, "sink.file.roll.interval has no effect with per-epoch: true"},
		{&file.RollConfig{Bytes: -1}, "sink.file.roll.bytes must be at least 0"},
	} {
		err := spec(tc.roll).Validate(builtin)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("roll %+v: Validate = %v, want nil", tc.roll, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("roll %+v: Validate = %v, want %q", tc.roll, err, tc.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"interval", "max-records-per-partition"}
	for _, tc := range []struct{ word, want string }{
		{"intreval", "interval"},
		{"Interval", "interval"},
		{"intervals", "interval"},
		{"max-records", ""},
		{"foo", ""},
		{"i", ""},
	} {
		if got := pipelines.Suggest(tc.word, keys); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.word, got, tc.want)
		}
	}
}

// Every example pipeline, including ones added later, must lint clean.
func TestExamplesAreValid(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("../examples/*.yml")
	plugins, _ := filepath.Glob("../examples/plugins/*.yaml")
	files = append(append(files, more...), plugins...)
	if len(files) == 0 {
		t.Fatal("no examples/*.yaml found")
	}
	for _, f := range files {
		if _, err := pipelines.Load(f, builtin); err != nil {
			t.Errorf("%v", err)
		}
	}
}

// Hostile files end with a bounded report, not a flood or a hang.
func TestHostileInputsAreBounded(t *testing.T) {
	var many strings.Builder
	for i := 0; many.Len() < 100_000; i++ {
		fmt.Fprintf(&many, "k%d: v\n", i)
	}
	inputs := map[string]string{
		"thousands of unknown keys": many.String(),
		"deep settings":             "transforms: [{plugin: ./p, settings: " + strings.Repeat("{a: ", 5000) + "1" + strings.Repeat("}", 5000) + "}]\n",
		"self-referencing settings": "transforms:\n  - plugin: ./p\n    settings: &s {a: *s, b: *s, c: *s, d: *s}\n",
		"long list":                 strings.Repeat("- x\n", 50_000),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			errs := parseErrs(t, []byte(in), noEnv)
			if len(errs) > pipelines.MaxErrors+1 {
				t.Errorf("%d error lines, want at most %d", len(errs), pipelines.MaxErrors+1)
			}
		})
	}
	errs := parseErrs(t, []byte(many.String()), noEnv)
	if last := errs[len(errs)-1]; !strings.Contains(last.Msg, "more problems from here on are not shown") {
		t.Errorf("last line = %v, want the count of hidden problems", last)
	}
}

// Every default tag parses, and every block of the spec is documented.
func TestReferenceCoversEveryBlock(t *testing.T) {
	var paths []string
	for _, b := range pipelines.Reference(builtin) {
		paths = append(paths, b.Path)
		for _, k := range b.Keys {
			if k.Type == "" {
				t.Errorf("%s.%s has no type", b.Path, k.Name)
			}
		}
	}
	want := "[ source source.generate source.kafka source.kafka.tls source.kafka.sasl batch transforms[] (plugin) transforms[] (aggregate) transforms[] (aggregate).aggregate transforms[] (aggregate).aggregate.window transforms[] (aggregate).aggregate.window.sliding transforms[] (aggregate).aggregate.window.session transforms[] (dedupe) transforms[] (dedupe).dedupe transforms[] (repartition) transforms[] (repartition).repartition sink sink.file sink.file.roll sink.stdout sink.postgres sink.kafka sink.kafka.tls sink.kafka.sasl dead-letter]"
	if got := fmt.Sprint(paths); got != want {
		t.Errorf("blocks = %s\nwant     %s", got, want)
	}
	var md strings.Builder
	if err := pipelines.WriteReference(&md, builtin); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "| `mode` | string | `direct` | one of direct, receiver |") {
		t.Errorf("markdown reference lacks the mode row:\n%s", md.String())
	}
	// Applying every default to a zero spec and to every kind's block must
	// not panic.
	pipelines.SetDefaults(&pipelines.Spec{})
	for _, role := range [][]pipelines.Kind{builtin.Sources, builtin.Sinks, builtin.Steps} {
		for _, k := range role {
			pipelines.SetDefaults(k.Config())
		}
	}
}

func BenchmarkParseExample(b *testing.B) {
	data, err := os.ReadFile("../examples/generate-to-file.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := pipelines.Parse("x.yaml", data, noEnv, builtin); err != nil {
			b.Fatal(err)
		}
	}
}
