// Command ingest measures what users run: the sluice binary, started as a
// subprocess, reading records that an independent client (franz-go) wrote
// into a standalone `sluice broker`, exactly-once into a sink. Every row is
// measured in the same run against the same data, beside a bare franz-go
// consumer reading it, so the figures that matter are the ratios to that
// baseline rather than absolute rates on whatever machine ran it. Each
// sluice run's output is counted afterwards: a run that lost or duplicated
// records is reported as a failure, not as a figure. A second table gives
// end-to-end latency of continuous pipelines (batch interval 0) at a fixed
// produce rate.
//
//	go run ./bench/ingest [-records 8000000] [-partitions 4] [-modes direct,receiver,keyed,aggregate]
//	    [-sink file|kafka|postgres] [-runs 1] [-latency 20s] [-write BENCHMARKS.md]
//
// The table goes to stdout, progress and child-process log tails to stderr.
// The exit status is 1 if any row failed.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// recordBytes is the value size of every record this benchmark produces.
const recordBytes = 100

// config is the parsed command line.
type config struct {
	sluice       string // the binary under test; "" = build it
	baseline     string // an earlier build measured beside it, or ""
	records      int
	partitions   int
	compression  string
	modes        []string
	sink         string
	runs         int
	idleExit     time.Duration
	interval     string // batch.interval as written in YAML; "" = sluice's default
	maxRecords   int    // batch.max-records-per-partition; 0 = sluice's default
	latency      time.Duration
	latencyRate  int
	latencySinks []string
	profileDir   string
	write        string
	timeout      time.Duration
	rawConsumer  string // set in the re-executed baseline child: the broker address
	commandLine  string // how this run was invoked, for the report header
	pgDSN        string
	keys         int
}

func parseFlags() config {
	var c config
	var modes, latencySinks string
	flag.StringVar(&c.sluice, "sluice", "", "sluice binary to measure (default: go build ./cmd/sluice into the temp dir)")
	flag.StringVar(&c.baseline, "baseline", "", "another sluice binary (an earlier build) measured beside -sluice in the same run: each sluice row's runs alternate between the two, and the report gives the median of the per-run ratios")
	flag.IntVar(&c.records, "records", 8_000_000, "records written to topic bench and read by every row")
	flag.IntVar(&c.partitions, "partitions", 4, "partitions of topic bench (and of the latency and output topics)")
	flag.StringVar(&c.compression, "compression", "none", "compression of the fill producer: none, lz4, snappy, zstd or gzip")
	flag.StringVar(&modes, "modes", "direct,receiver", "sluice rows, in order: direct, receiver (Kafka source modes), generate (the generate source: engine and sink without Kafka), plugin (generate → the built-in uppercase plugin, a subprocess → sink), keyed (direct mode from a topic of keyed JSON values) and aggregate (keyed plus the aggregate step; with keyed, the two run alternately and their ratio is reported)")
	flag.IntVar(&c.keys, "keys", 100_000, "distinct keys of the keyed and aggregate rows' topic")
	flag.StringVar(&c.sink, "sink", "file", "sink of the throughput rows: file (raw part files), kafka (a topic on the same broker) or postgres (needs SLUICE_TEST_PG_DSN)")
	flag.IntVar(&c.runs, "runs", 1, "runs per row; the table shows the median run")
	flag.DurationVar(&c.idleExit, "idle-exit", time.Second, "sluice run --idle-exit (the run is timed to its last commit, not to its exit)")
	flag.StringVar(&c.interval, "interval", "", "batch.interval of the throughput pipelines (default: sluice's)")
	flag.IntVar(&c.maxRecords, "max-records-per-partition", 0, "batch.max-records-per-partition of every pipeline (default: sluice's)")
	flag.DurationVar(&c.latency, "latency", 20*time.Second, "how long to produce per latency row once the pipeline is up, the first 2s being warm-up; 0 skips the latency table")
	flag.IntVar(&c.latencyRate, "latency-rate", 20_000, "records/s produced during the latency rows")
	flag.StringVar(&latencySinks, "latency-sinks", "kafka,file", "sinks of the latency rows: kafka, file")
	flag.StringVar(&c.profileDir, "cpuprofile", "", "directory for CPU and heap profiles of each sluice row (MODE.cpu.pprof, MODE.heap.pprof; the last run's)")
	flag.StringVar(&c.write, "write", "", "also write the report to this file (e.g. BENCHMARKS.md)")
	flag.DurationVar(&c.timeout, "timeout", 30*time.Minute, "longest a single sluice run or baseline may take")
	flag.StringVar(&c.rawConsumer, "raw-consumer", "", "internal: run as the baseline consumer child against this broker address")
	flag.Parse()
	c.modes = splitList(modes)
	c.latencySinks = splitList(latencySinks)
	c.commandLine = strings.TrimSpace("go run ./bench/ingest " + strings.Join(os.Args[1:], " "))
	c.pgDSN = os.Getenv("SLUICE_TEST_PG_DSN")
	if c.rawConsumer == "" {
		c.validate()
	}
	return c
}

func (c *config) validate() {
	if c.records <= 0 || c.partitions <= 0 || c.runs <= 0 || c.latencyRate <= 0 {
		log.Fatal("-records, -partitions, -runs and -latency-rate must be positive")
	}
	if _, ok := codecs[c.compression]; !ok {
		log.Fatalf("-compression %q: use none, lz4, snappy, zstd or gzip", c.compression)
	}
	for _, m := range c.modes {
		if !slices.Contains([]string{"direct", "receiver", "generate", "plugin", "keyed", "aggregate"}, m) {
			log.Fatalf("-modes: unknown mode %q: use direct, receiver, generate, plugin, keyed or aggregate", m)
		}
	}
	if !slices.Contains([]string{"file", "kafka", "postgres"}, c.sink) {
		log.Fatalf("-sink %q: use file, kafka or postgres", c.sink)
	}
	for _, s := range c.latencySinks {
		if s != "file" && s != "kafka" {
			log.Fatalf("-latency-sinks: unknown sink %q: use kafka or file", s)
		}
	}
	if c.interval != "" {
		if _, err := time.ParseDuration(c.interval); err != nil {
			log.Fatalf("-interval: %v", err)
		}
	}
	if c.latency > 0 && c.latency <= warmUp {
		log.Fatalf("-latency %v: give more than the %v warm-up, or 0 to skip latency", c.latency, warmUp)
	}
	if c.idleExit <= 0 {
		log.Fatal("-idle-exit must be positive: it is how sluice run knows the backlog is done")
	}
	if slices.Contains(c.modes, "aggregate") && c.sink != "file" {
		log.Fatal("-modes aggregate checks its output in part files: use -sink file")
	}
	if c.keys <= 0 {
		log.Fatal("-keys must be positive")
	}
	if c.sink == "postgres" && c.pgDSN == "" {
		log.Print("skipping: -sink postgres needs SLUICE_TEST_PG_DSN (eval \"$(.ci/postgres.sh)\" starts a throwaway server)")
		os.Exit(0)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("bench/ingest: ")
	cfg := parseFlags()
	if cfg.rawConsumer != "" {
		if err := rawConsume(cfg.rawConsumer, cfg.records, cfg.partitions, cfg.timeout); err != nil {
			log.Fatal(err)
		}
		return
	}
	// The children run in their own process groups (see startChild), so a
	// Ctrl-C reaches only this process, which stops them.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { fatalf("interrupted by %v: stopping the child processes", <-sig) }()
	ok, err := run(cfg)
	jan.cleanup()
	switch {
	case err != nil:
		log.Fatal(err)
	case !ok:
		log.Fatal("FAILED: at least one row lost or duplicated records or did not exit cleanly (see the table)")
	}
}

// run measures every row and prints the report. ok is false if a row
// failed; err is a failure of the benchmark itself.
func run(cfg config) (ok bool, err error) {
	dir, err := os.MkdirTemp("", "sluice-bench-ingest-")
	if err != nil {
		return false, err
	}
	jan.setDir(dir)
	if cfg.profileDir != "" {
		if cfg.profileDir, err = filepath.Abs(cfg.profileDir); err != nil {
			return false, err
		}
		if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
			return false, err
		}
	}

	env := describeMachine() // before the build, so the commit is the one built
	b := &bench{cfg: cfg, dir: dir}
	if b.sluice, err = sluiceBinary(cfg.sluice, dir); err != nil {
		return false, err
	}
	env.sluiceVersion = sluiceVersion(b.sluice)
	if err := b.startBroker(); err != nil {
		return false, err
	}
	if err := b.fill(); err != nil {
		return false, err
	}
	if slices.Contains(cfg.modes, "keyed") || slices.Contains(cfg.modes, "aggregate") {
		if err := b.fillKeyed(); err != nil {
			return false, err
		}
	}
	rep := report{cfg: cfg, env: env}
	rep.rows = append(rep.rows, b.measureRow("raw franz-go consumer", b.runRawConsumer))
	// With both keyed and aggregate, the step's cost is measured as a
	// pair: the two rows alternate run by run, as -baseline does.
	stepPair := cfg.baseline == "" && slices.Contains(cfg.modes, "keyed") && slices.Contains(cfg.modes, "aggregate")
	for _, mode := range cfg.modes {
		name := rowName(mode, cfg.sink)
		if stepPair && mode == "keyed" {
			continue
		}
		if stepPair && mode == "aggregate" {
			p := b.measurePair([2]string{name, rowName("keyed", cfg.sink)},
				func(run int) (measurement, error) { return b.runSluice(b.sluice, "aggregate", run) },
				func(run int) (measurement, error) { return b.runSluice(b.sluice, "keyed", run) })
			rep.rows = append(rep.rows, p.rows[1], p.rows[0])
			rep.step = &p
			continue
		}
		if cfg.baseline == "" {
			rep.rows = append(rep.rows, b.measureRow(name,
				func(run int) (measurement, error) { return b.runSluice(b.sluice, mode, run) }))
			continue
		}
		p := b.measurePair([2]string{name, name + " (baseline)"},
			func(run int) (measurement, error) { return b.runSluice(b.sluice, mode, run) },
			func(run int) (measurement, error) { return b.runSluice(cfg.baseline, mode, run) })
		rep.rows = append(rep.rows, p.rows[0], p.rows[1])
		rep.pairs = append(rep.pairs, p)
	}
	if cfg.latency > 0 {
		for _, mode := range cfg.modes {
			if mode != "direct" && mode != "receiver" {
				continue // no producer to time against, or the same as direct
			}
			for _, sink := range cfg.latencySinks {
				rep.latency = append(rep.latency, b.measureLatency(mode, sink))
			}
		}
	}
	b.stopBroker()

	text := rep.markdown()
	fmt.Print(text)
	if cfg.write != "" {
		doc := rep.document(text)
		// Sections other tools measured (bench/compaction) follow a
		// marker; they are kept as they are.
		if old, err := os.ReadFile(cfg.write); err == nil {
			if i := strings.Index(string(old), keptSectionsMarker); i >= 0 {
				doc = strings.TrimRight(doc, "\n") + "\n\n" + string(old[i:])
			}
		}
		if err := os.WriteFile(cfg.write, []byte(doc), 0o644); err != nil {
			return false, err
		}
		log.Printf("wrote %s", cfg.write)
	}
	return !rep.failed(), nil
}

// bench holds what the rows share: the binary, the broker, the temp dir.
type bench struct {
	cfg    config
	dir    string
	sluice string
	addr   string // the broker's Kafka listener
	broker *child
}

// rowName names the throughput row of mode.
func rowName(mode, sink string) string {
	switch mode {
	case "keyed":
		return fmt.Sprintf("sluice direct (keyed JSON) → %s", sink)
	case "aggregate":
		return fmt.Sprintf("sluice direct (keyed JSON) → aggregate → %s", sink)
	}
	return fmt.Sprintf("sluice %s → %s", mode, sink)
}

// keptSectionsMarker starts the part of BENCHMARKS.md that -write keeps:
// sections measured by other tools.
const keptSectionsMarker = "<!-- kept by bench/ingest -write: sections measured by other tools -->"
