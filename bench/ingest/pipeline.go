package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// measurement is one run of one row.
type measurement struct {
	processing time.Duration // from exec to the last commit (sluice) or to exit (raw consumer)
	rssKiB     int64
	cpu        time.Duration // user + system
}

// row is one line of the throughput table: the median of its runs, or why
// it has no figures.
type row struct {
	name    string
	median  measurement
	problem string
}

// measureRow runs once cfg.runs times and keeps the run with the median
// processing time, so its memory and CPU belong to the same run. The first
// failed run ends the row: a failure is the result.
func (b *bench) measureRow(name string, once func(run int) (measurement, error)) row {
	var ms []measurement
	for run := range b.cfg.runs {
		log.Printf("%s, run %d of %d", name, run+1, b.cfg.runs)
		settleDisk()
		m, err := once(run)
		if err != nil {
			log.Printf("%s: %v", name, err)
			return row{name: name, problem: err.Error()}
		}
		log.Printf("%s: %.2fs, %.0f records/s, peak RSS %d MiB, CPU %.1fs", name,
			m.processing.Seconds(), float64(b.cfg.records)/m.processing.Seconds(), m.rssKiB>>10, m.cpu.Seconds())
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(x, y measurement) int { return int(x.processing - y.processing) })
	return row{name: name, median: ms[len(ms)/2]}
}

// pair is a row measured beside the same row of the -baseline binary.
type pair struct {
	rows  [2]row    // this binary's, the baseline's
	ratio float64   // median over runs of baseline time ÷ this binary's time
	each  []float64 // the per-run ratios
}

// measurePair runs this binary's and the baseline's row (or the keyed
// row, beside the aggregate row) alternately, run
// by run, so that whatever else the machine does falls on both alike, and
// takes the median of the per-run ratios.
func (b *bench) measurePair(names [2]string, once, baseline func(run int) (measurement, error)) pair {
	p := pair{rows: [2]row{{name: names[0]}, {name: names[1]}}}
	var ms [2][]measurement
	for run := range b.cfg.runs {
		var got [2]measurement
		fns := [2]func(int) (measurement, error){once, baseline}
		// Alternate which goes first, so neither always follows the
		// other's page-cache writeback.
		order := [2]int{run % 2, (run + 1) % 2}
		for _, i := range order {
			log.Printf("%s, run %d of %d", p.rows[i].name, run+1, b.cfg.runs)
			settleDisk()
			m, err := fns[i](run)
			if err != nil {
				log.Printf("%s: %v", p.rows[i].name, err)
				p.rows[i].problem = err.Error()
				return p
			}
			log.Printf("%s: %.2fs, peak RSS %d MiB, CPU %.1fs", p.rows[i].name, m.processing.Seconds(), m.rssKiB>>10, m.cpu.Seconds())
			got[i] = m
			ms[i] = append(ms[i], m)
		}
		p.each = append(p.each, got[1].processing.Seconds()/got[0].processing.Seconds())
	}
	for i := range ms {
		slices.SortFunc(ms[i], func(x, y measurement) int { return int(x.processing - y.processing) })
		p.rows[i].median = ms[i][len(ms[i])/2]
	}
	sorted := slices.Sorted(slices.Values(p.each))
	p.ratio = sorted[len(sorted)/2]
	return p
}

// runRawConsumer measures the baseline: this program re-executed with
// -raw-consumer, timed from exec to exit like sluice.
func (b *bench) runRawConsumer(run int) (measurement, error) {
	self, err := os.Executable()
	if err != nil {
		return measurement{}, err
	}
	c, err := startChild("raw consumer", filepath.Join(b.dir, fmt.Sprintf("raw-%d.log", run)), nil, self,
		"-raw-consumer", b.addr, "-records", strconv.Itoa(b.cfg.records),
		"-partitions", strconv.Itoa(b.cfg.partitions), "-timeout", b.cfg.timeout.String())
	if err != nil {
		return measurement{}, err
	}
	if err := c.wait(b.cfg.timeout + time.Minute); err != nil {
		return measurement{}, c.failed(err)
	}
	rss, cpu := c.usage()
	return measurement{processing: c.wall, rssKiB: rss, cpu: cpu}, nil
}

// runSluice runs one throughput pipeline for mode with `sluice run
// --idle-exit`, then counts what its sink committed.
func (b *bench) runSluice(bin, mode string, run int) (measurement, error) {
	suffix := fmt.Sprintf("%s-%d", mode, run)
	if bin != b.sluice {
		suffix += "-baseline"
	}
	name := "bench-" + suffix
	out, err := b.output(b.cfg.sink, suffix)
	if err != nil {
		return measurement{}, err
	}
	defer out.drop()
	source := fmt.Sprintf("{generate: {count: %d, partitions: %d}}", b.cfg.records, b.cfg.partitions)
	var transforms string
	switch mode {
	case "generate":
	case "plugin":
		transforms = "[{plugin: uppercase}]"
	case "keyed":
		source = b.kafkaSource(keyedTopic, "direct", name)
	case "aggregate":
		source = b.kafkaSource(keyedTopic, "direct", name)
		transforms = aggregateStep
	default:
		source = b.kafkaSource(benchTopic, mode, name)
	}
	spec := pipeline{name: name, source: source, batch: b.cfg.batch(b.cfg.interval), transforms: transforms, sink: out.yaml}
	var env []string
	if d := b.cfg.profileDir; d != "" {
		env = []string{"SLUICE_CPUPROFILE=" + filepath.Join(d, mode+".cpu.pprof"),
			"SLUICE_MEMPROFILE=" + filepath.Join(d, mode+".heap.pprof")}
	}
	// Debug level in JSON: every commit is logged with its time, so the
	// run is timed to its last commit, not to the idle wait after it.
	c, err := b.startSluiceWith(bin, spec, suffix, env, "--idle-exit", b.cfg.idleExit.String(),
		"--log-level", "debug", "--log-format", "json")
	if err != nil {
		return measurement{}, err
	}
	defer os.RemoveAll(filepath.Join(b.dir, "data-"+suffix))
	if err := c.wait(b.cfg.timeout); err != nil {
		return measurement{}, c.failed(err)
	}
	rss, cpu := c.usage()
	last, err := lastCommit(c.logPath)
	if err != nil {
		return measurement{}, c.failed(err)
	}
	m := measurement{processing: last.Sub(c.start), rssKiB: rss, cpu: cpu}
	if mode == "aggregate" {
		if err := b.checkAggregate(out.dir); err != nil {
			return m, c.failed(err)
		}
		return m, nil
	}
	got, err := out.count()
	if err != nil {
		return m, fmt.Errorf("counting the output: %w", err)
	}
	if want := int64(b.cfg.records); got != want {
		what := "incomplete"
		if got > want {
			what = "duplicates"
		}
		// --idle-exit firing before the backlog is read shows up here.
		return m, c.failed(fmt.Errorf("%s: %d of %d records in the output", what, got, want))
	}
	return m, nil
}

// settleDisk writes back what earlier rows left dirty in the page cache
// (gigabytes after a throughput row), so the kernel's writeback does not
// stall the next row's fsyncs and land in its figures.
func settleDisk() { syscall.Sync() }

// lastCommit is the time of the last "committed" line in a JSON log of
// sluice run at debug level.
func lastCommit(logPath string) (time.Time, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	var last time.Time
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "committed" {
			last = line.Time
		}
	}
	if err := sc.Err(); err != nil {
		return time.Time{}, err
	}
	if last.IsZero() {
		return time.Time{}, fmt.Errorf("no commit in %s", logPath)
	}
	return last, nil
}

// pipeline is the part of a pipeline file that differs between rows:
// its name, and source, batch, transforms and sink as YAML flow mappings
// or sequences (batch or transforms "" = left out).
type pipeline struct {
	name, source, batch, transforms, sink string
}

func (p pipeline) yaml() string {
	var s strings.Builder
	fmt.Fprintf(&s, "version: 1\nname: %s\nsource: %s\n", p.name, p.source)
	if p.batch != "" {
		fmt.Fprintf(&s, "batch: %s\n", p.batch)
	}
	if p.transforms != "" {
		fmt.Fprintf(&s, "transforms: %s\n", p.transforms)
	}
	fmt.Fprintf(&s, "delivery: exactly-once\nsink: %s\n", p.sink)
	return s.String()
}

func (b *bench) kafkaSource(topic, mode, group string) string {
	return fmt.Sprintf("{kafka: {brokers: [%q], topics: [%s], mode: %s, start: earliest, group: %s}}",
		b.addr, topic, mode, group)
}

// batch is the batch: block for interval (as given, "" = sluice's default)
// and -max-records-per-partition, or "" when both are sluice's defaults.
func (c config) batch(interval string) string {
	var keys []string
	if interval != "" {
		keys = append(keys, "interval: "+interval)
	}
	if c.maxRecords > 0 {
		keys = append(keys, fmt.Sprintf("max-records-per-partition: %d", c.maxRecords))
	}
	if len(keys) == 0 {
		return ""
	}
	return "{" + strings.Join(keys, ", ") + "}"
}

// startSluice writes spec into the temp dir and starts `sluice run` on it
// with its data under data-SUFFIX and its log in SUFFIX.log.
func (b *bench) startSluice(spec pipeline, suffix string, env []string, flags ...string) (*child, error) {
	return b.startSluiceWith(b.sluice, spec, suffix, env, flags...)
}

// startSluiceWith is startSluice with the sluice binary bin.
func (b *bench) startSluiceWith(bin string, spec pipeline, suffix string, env []string, flags ...string) (*child, error) {
	file := filepath.Join(b.dir, spec.name+".yaml")
	if err := os.WriteFile(file, []byte(spec.yaml()), 0o644); err != nil {
		return nil, err
	}
	args := append([]string{"--log-level", "warn", "run", file, "--data", filepath.Join(b.dir, "data-"+suffix)}, flags...)
	return startChild("sluice run "+spec.name, filepath.Join(b.dir, suffix+".log"), env, bin, args...)
}

// output is a sink for one run: its YAML, how to count the records it
// committed, and how to free what it wrote.
type output struct {
	dir   string // the file sink's folder
	yaml  string
	count func() (int64, error)
	drop  func()
}

func (b *bench) output(kind, suffix string) (output, error) {
	switch kind {
	case "kafka":
		topic := "out-" + suffix
		// Partitioned like the input, so the sink is not held to one
		// partition's leader by the broker's default of 1.
		if err := createTopic(b.addr, topic, b.cfg.partitions); err != nil {
			return output{}, err
		}
		return output{
			yaml:  fmt.Sprintf("{kafka: {brokers: [%q], topic: %s}}", b.addr, topic),
			count: func() (int64, error) { return countTopic(b.addr, topic, 3*time.Second) },
			drop:  func() {},
		}, nil
	case "postgres":
		table := "bench_" + strings.ReplaceAll(suffix, "-", "_")
		drop := func() { dropPostgres(b.cfg.pgDSN, table, "bench-"+suffix) }
		drop() // a table and checkpoint left by an earlier invocation would be resumed from
		return output{
			yaml:  fmt.Sprintf("{postgres: {dsn: \"${SLUICE_TEST_PG_DSN}\", table: %s, create-table: true}}", table),
			count: func() (int64, error) { return countPostgres(b.cfg.pgDSN, table) },
			drop:  drop,
		}, nil
	default:
		dir := filepath.Join(b.dir, "out-"+suffix)
		return output{
			dir:   dir,
			yaml:  fmt.Sprintf("{file: {path: %q, format: raw}}", dir),
			count: func() (int64, error) { return countLines(dir) },
			drop:  func() { os.RemoveAll(dir) },
		}, nil
	}
}

// countLines counts the lines of the committed part files in dir. The file
// sink stages under dir/_sluice/ and renames a part file to dir/part-* as
// its commit point, so only those count.
func countLines(dir string) (int64, error) {
	parts, err := filepath.Glob(filepath.Join(dir, "part-*"))
	if err != nil {
		return 0, err
	}
	var n int64
	buf := make([]byte, 1<<20)
	for _, p := range parts {
		f, err := os.Open(p)
		if err != nil {
			return n, err
		}
		for {
			k, err := f.Read(buf)
			n += int64(bytes.Count(buf[:k], []byte{'\n'}))
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Close()
				return n, err
			}
		}
		f.Close()
	}
	return n, nil
}

func countPostgres(dsn, table string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n)
	return n, err
}

// dropPostgres removes a run's table and its pipeline's checkpoint rows.
func dropPostgres(dsn, table, pipelineName string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		log.Printf("postgres: %v", err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize()); err != nil {
		log.Printf("postgres: drop %s: %v", table, err)
	}
	// The single chain's row, and the tasks' rows of a pipeline split
	// into tasks: a row left over would start the next run where this one
	// ended, on a topic of another broker.
	for _, cps := range []string{"sluice_checkpoints", "sluice_task_checkpoints"} {
		var exists bool
		if conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", cps).Scan(&exists); exists {
			if _, err := conn.Exec(ctx, "DELETE FROM "+cps+" WHERE pipeline = $1", pipelineName); err != nil {
				log.Printf("postgres: delete the checkpoints of %s from %s: %v", pipelineName, cps, err)
			}
		}
	}
}
