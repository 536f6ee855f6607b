package pipelines_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/plugins/host"
	"github.com/sluicehq/sluice/sinks/file"
	"github.com/sluicehq/sluice/sinks/stdout"
	"github.com/sluicehq/sluice/sources/generate"
	"github.com/sluicehq/sluice/sources/kafka"
	"github.com/sluicehq/sluice/steps/aggregate"
	"github.com/sluicehq/sluice/steps/dedupe"
)

// Every number a pipeline file can set has an upper bound that lint
// enforces, so a file lint accepts is one run can start.
func TestEveryNumericKeyHasAMax(t *testing.T) {
	for _, b := range pipelines.Reference(builtin) {
		for _, k := range b.Keys {
			numeric := k.Type == "integer" || k.Type == "duration" || k.Type == "size"
			if numeric && k.Max == "" && !(b.Path == "" && k.Name == "version") &&
				!(b.Path == "source.kafka" && k.Name == "session-timeout") { // bounded by Validate (1s to 30m)
				t.Errorf("%s.%s (%s) has no max tag", b.Path, k.Name, k.Type)
			}
		}
	}
}

// The max (and min) tags say what the named constants say.
func TestBoundTagsMatchConstants(t *testing.T) {
	keys := map[string]pipelines.Key{}
	for _, b := range pipelines.Reference(builtin) {
		for _, k := range b.Keys {
			keys[b.Path+"."+k.Name] = k
		}
	}
	n := func(i int64) string { return strconv.FormatInt(i, 10) }
	d := func(x time.Duration) string { return x.String() }
	dur := func(s string) string { v, _ := time.ParseDuration(s); return v.String() }
	size := func(s string) string { v, _ := pipelines.ParseByteSize(s); return v.String() }
	num := func(s string) string { return strings.ReplaceAll(s, "_", "") }
	const agg = "transforms[] (aggregate).aggregate"
	for _, tc := range []struct {
		key, got, want string
	}{
		{"batch.max-records-per-partition", num(keys["batch.max-records-per-partition"].Max), n(pipelines.MaxRecordsPerPartition)},
		{"batch.interval", dur(keys["batch.interval"].Max), d(pipelines.MaxBatchInterval)},
		{"source.generate.partitions", num(keys["source.generate.partitions"].Max), n(generate.MaxPartitions)},
		{"source.generate.count", num(keys["source.generate.count"].Max), n(generate.MaxCount)},
		{"source.generate.keys", num(keys["source.generate.keys"].Max), n(generate.MaxKeys)},
		{"source.generate.rate", num(keys["source.generate.rate"].Max), n(generate.MaxRate)},
		{"transforms[] (plugin).workers", num(keys["transforms[] (plugin).workers"].Max), n(host.MaxWorkers)},
		{"transforms[] (plugin).timeout", dur(keys["transforms[] (plugin).timeout"].Max), d(host.MaxTimeout)},
		{"transforms[] (plugin).memory max", size(keys["transforms[] (plugin).memory"].Max), pipelines.ByteSize(host.MaxMemory).String()},
		{"transforms[] (plugin).memory min", size(keys["transforms[] (plugin).memory"].Min), pipelines.ByteSize(host.MinMemory).String()},
		{"aggregate allowed-lateness", dur(keys[agg+".allowed-lateness"].Max), d(aggregate.MaxAllowedLateness)},
		{"aggregate tumbling", dur(keys[agg+".window.tumbling"].Max), d(aggregate.MaxWindow)},
		{"aggregate sliding size", dur(keys[agg+".window.sliding.size"].Max), d(aggregate.MaxWindow)},
		{"aggregate sliding every", dur(keys[agg+".window.sliding.every"].Max), d(aggregate.MaxWindow)},
		{"aggregate session gap", dur(keys[agg+".window.session.gap"].Max), d(aggregate.MaxWindow)},
		{"dedupe within", dur(keys["transforms[] (dedupe).dedupe.within"].Max), d(dedupe.MaxWithin)},
		{"sink.file.roll.bytes", num(keys["sink.file.roll.bytes"].Max), n(file.MaxRollBytes)},
		{"sink.file.roll.interval", dur(keys["sink.file.roll.interval"].Max), d(file.MaxRollInterval)},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: tag says %q, the constant %q", tc.key, tc.got, tc.want)
		}
	}
	_ = kafka.Settings{}
}

// Values past a bound fail lint with one line that says what to write.
func TestUpperBounds(t *testing.T) {
	base := func(source string, lines ...string) []byte {
		return doc(append([]string{"version: 1", "name: t", "source: " + source, "sink: {file: {path: x}}"}, lines...)...)
	}
	gen := func(kv string) []byte { return base("{generate: {" + kv + "}}") }
	step := func(kv string) []byte { return base("{generate: {}}", "transforms: [{plugin: ./p, "+kv+"}]") }
	for _, tc := range []struct {
		name string
		data []byte
		msg  string
	}{
		{"partitions", gen("partitions: 2000000000"), "source.generate.partitions must be at most 10000, got 2000000000; write partitions: 10000 or less"},
		{"rate", gen("rate: 1e12"), "source.generate.rate must be at most 1_000_000_000, got 1000000000000; write rate: 1_000_000_000 or less (records/s across partitions; 0 = as fast as possible)"},
		{"count", gen("count: 9223372036854775807"), "source.generate.count must be at most 1_000_000_000_000_000"},
		{"workers", step("workers: 9223372036854775807"), "transforms[0].workers must be at most 64, got 9223372036854775807; write workers: 64 or less"},
		{"workers past int64", step("workers: 92233720368547758070"), "transforms[0].workers must be at most 64, got 92233720368547758070; write workers: 64 or less"},
		{"timeout", step("timeout: 100h"), "transforms[0].timeout must be at most 1h, got 100h; write timeout: 1h or less"},
		{"memory too large", step("memory: 2TiB"), "transforms[0].memory must be at most 1TiB, got 2TiB; write memory: 1TiB or less"},
		{"memory too small", step("memory: 1MiB"), "transforms[0].memory must be at least 128MiB, got 1MiB; write memory: 128MiB or more"},
		{"memory bad unit", step("memory: 256 megs"), `transforms[0].memory: bad size "256 megs"; write a size such as memory: 256MiB`},
		{"memory overflow", step("memory: 99999999999TiB"), `transforms[0].memory: size "99999999999TiB" is too large`},
		{"max-records-per-partition", base("{generate: {}}", "batch: {max-records-per-partition: 1e9}"), "batch.max-records-per-partition must be at most 1_000_000, got 1000000000"},
		{"batch interval", base("{generate: {}}", "batch: {interval: 48h}"), "batch.interval must be at most 24h, got 48h"},
		{"max-rate", base("{kafka: {topics: [a], max-rate: 1e10}}"), "source.kafka.max-rate must be at most 1_000_000_000"},
		{"block-interval", base("{kafka: {topics: [a], mode: receiver, block-interval: 5m}}"), "source.kafka.block-interval must be at most 1m, got 5m"},
		{"roll bytes", doc("version: 1", "name: t", "source: {generate: {}}", "sink: {file: {path: x, roll: {bytes: 1e15}}}"), "sink.file.roll.bytes must be at most 68_719_476_736"},
		{"roll interval", doc("version: 1", "name: t", "source: {generate: {}}", "sink: {file: {path: x, roll: {interval: 1000h}}}"), "sink.file.roll.interval must be at most 24h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := parseErrs(t, tc.data, noEnv)
			if len(errs) != 1 || !strings.Contains(errs[0].Msg, tc.msg) {
				t.Errorf("got %v\nwant one line containing %q", errs, tc.msg)
			}
		})
	}
	// At the bounds, lint accepts.
	s := mustParse(t, step("workers: 64, timeout: 1h, memory: 1TiB"), noEnv)
	if st := s.Transforms[0].Config.(*host.Step); st.Workers != 64 || st.Memory != 1<<40 {
		t.Errorf("step = %+v", st)
	}
	s = mustParse(t, step("memory: 268435456"), noEnv)
	if st := s.Transforms[0].Config.(*host.Step); st.Memory.String() != "256MiB" {
		t.Errorf("memory: 268435456 reads as %s, want 256MiB", st.Memory)
	}
	mustParse(t, gen("partitions: 10000, rate: 1_000_000_000"), noEnv)
}

// A Spec built in Go is held to the same bounds.
func TestValidateGoSpecUpperBounds(t *testing.T) {
	s := &pipelines.Spec{Version: 1, Name: "built", Delivery: pipelines.AtLeastOnce, Batch: pipelines.Batch{MaxRecordsPerPartition: 1},
		Source:     pipelines.Component{Kind: "generate", Config: &generate.Config{Partitions: 2_000_000_000}},
		Sink:       pipelines.Component{Kind: "stdout", Config: &stdout.Config{Format: "raw"}},
		Transforms: []pipelines.Component{{Kind: "plugin", Config: &host.Step{Plugin: "p", Workers: 1, Memory: 2 << 40}}}}
	err := s.Validate(builtin)
	if err == nil || !strings.Contains(err.Error(), "source.generate.partitions must be at most 10000, got 2000000000") ||
		!strings.Contains(err.Error(), "transforms[0].memory must be at most 1TiB, got 2TiB") {
		t.Errorf("Validate = %v", err)
	}
}

// The expanded file is bounded like the file: lint stops expanding as soon
// as the output passes MaxExpandedSize and says so in one line.
func TestExpansionIsBounded(t *testing.T) {
	big := strings.Repeat("x", 32<<10)
	env := envOf(map[string]string{"BIG": big})
	// 16,000 references to 32 KiB would expand to 500 MiB.
	var settings strings.Builder
	for i := range 16_000 {
		fmt.Fprintf(&settings, "      k%d: ${BIG}\n", i)
	}
	inputs := map[string]string{
		"many scalars": "version: 1\nname: t\nsource: {generate: {}}\nsink: {file: {path: x}}\ntransforms:\n  - plugin: ./p\n    settings:\n" + settings.String(),
		"one scalar":   "version: 1\nname: t\nsource: {generate: {}}\nsink: {file: {path: x}}\ntransforms:\n  - plugin: ./p\n    settings: {v: \"" + strings.Repeat("${BIG}", 16_000) + "\"}\n",
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			errs := parseErrs(t, []byte(in), env)
			want := "with its ${VAR} references expanded the file passes 1048576 bytes (1 MiB), the cap for a pipeline"
			if len(errs) != 1 || !strings.Contains(errs[0].Msg, want) || errs[0].File != "t.yaml" {
				t.Errorf("got %v\nwant one line with %q", errs, want)
			}
		})
	}
	// Just under the cap is fine: 30 references to 32 KiB.
	var ok strings.Builder
	for i := range 30 {
		fmt.Fprintf(&ok, "      k%d: ${BIG}\n", i)
	}
	mustParse(t, []byte("version: 1\nname: t\nsource: {generate: {}}\nsink: {file: {path: x}}\ntransforms:\n  - plugin: ./p\n    settings:\n"+ok.String()), env)
}
