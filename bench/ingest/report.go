package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// machine is what the figures depend on besides the code.
type machine struct {
	cpus          int
	cpuModel      string
	goVersion     string
	platform      string
	date          string
	commit        string
	sluiceVersion string
}

func describeMachine() machine {
	return machine{
		cpus:      runtime.NumCPU(),
		cpuModel:  cpuModel(),
		goVersion: runtime.Version(),
		platform:  runtime.GOOS + "/" + runtime.GOARCH,
		date:      time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		commit:    commit(),
	}
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// commit is the short HEAD, with -dirty when the working tree has changes
// (the binary was built from them too).
func commit() string {
	head, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(head))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += "-dirty"
	}
	return c
}

// report is everything the benchmark prints.
type report struct {
	cfg     config
	env     machine
	rows    []row // the first is the raw consumer
	pairs   []pair
	step    *pair // the aggregate row beside the keyed row
	latency []latencyRow
}

func (r report) failed() bool {
	for _, x := range r.rows {
		if x.problem != "" {
			return true
		}
	}
	for _, x := range r.latency {
		if x.problem != "" {
			return true
		}
	}
	return false
}

// markdown is the tables with the sentences that say what they measured.
func (r report) markdown() string {
	var s strings.Builder
	c := r.cfg
	batch := "`batch:` not set (sluice's defaults)"
	if b := c.batch(c.interval); b != "" {
		batch = "`batch: " + b + "`"
	}
	s.WriteString("## Throughput\n")
	fmt.Fprintf(&s, "\n%d records of %d bytes (no key) in %d partitions, written by franz-go (acks=1, compression %s) into `sluice broker` before any row ran; every row reads all of them from that broker, exactly-once into the %s sink, %s; median of %d run(s).\n\n",
		c.records, recordBytes, c.partitions, c.compression, c.sink, batch, c.runs)
	s.WriteString("| row | records | processing s | records/s | ratio to raw consumer | peak RSS MiB | CPU s |\n")
	s.WriteString("|---|--:|--:|--:|--:|--:|--:|\n")
	base := r.rows[0]
	for _, x := range r.rows {
		if x.problem != "" {
			fmt.Fprintf(&s, "| %s | %d | FAILED: %s | | | | |\n", x.name, c.records, oneLine(x.problem))
			continue
		}
		rate := float64(c.records) / x.median.processing.Seconds()
		ratio := "n/a"
		if base.problem == "" {
			ratio = fmt.Sprintf("%.2f", rate*base.median.processing.Seconds()/float64(c.records))
		}
		fmt.Fprintf(&s, "| %s | %d | %.2f | %s | %s | %.0f | %.1f |\n", x.name, c.records,
			x.median.processing.Seconds(), thousands(rate), ratio, float64(x.median.rssKiB)/1024, x.median.cpu.Seconds())
	}
	fmt.Fprintf(&s, "\nprocessing s: for sluice, the time from exec of `sluice run --idle-exit %v` to its last commit (the time on the last `committed` line of its debug log; the idle wait after it is not counted); for the raw consumer (a plain read_committed franz-go consumer, in a child process), its wall time from exec to exit. Both include process start-up. Each sluice run's output was counted afterwards; a run that lost or duplicated records shows FAILED instead of figures. ratio = records/s ÷ the raw consumer's: 0.50 means that row took twice as long as a bare consumer to read the same data. Peak RSS and CPU s (user + system) are the kernel's accounting for that one process.",
		c.idleExit)
	if slices.Contains(c.modes, "generate") || slices.Contains(c.modes, "plugin") {
		s.WriteString(" The generate and plugin rows read no Kafka: their values are decimal counters, not 100 bytes; generate is the engine and sink's own ceiling, plugin adds the built-in uppercase plugin as a subprocess.")
	}
	if slices.Contains(c.modes, "keyed") || slices.Contains(c.modes, "aggregate") {
		fmt.Fprintf(&s, " The keyed rows read another topic, %s: as many values of %d bytes, JSON `{\"amount\": N, \"pad\": \"...\"}`, keyed k0..k%d in turn and partitioned by key hash; the aggregate row adds `transforms: %s` (its state in the durable store, with a changelog topic on the broker), and its output is checked instead of counted: the last count and total of each key and window, summed, must equal the records and the sum of their amounts.",
			keyedTopic, recordBytes, c.keys-1, aggregateStep)
	}
	s.WriteString("\n")
	if p := r.step; p != nil && p.rows[0].problem == "" && p.rows[1].problem == "" {
		each := make([]string, len(p.each))
		for i, x := range p.each {
			each[i] = fmt.Sprintf("%.2f", x)
		}
		fmt.Fprintf(&s, "\nThe aggregate step's cost, its row and the keyed row run alternately: the keyed row's processing time ÷ the aggregate row's, per run (%s); median **%.2f** (1.00: the step costs nothing; 0.50: the pipeline takes twice as long with it).\n",
			strings.Join(each, " "), p.ratio)
	}
	if len(r.pairs) > 0 {
		fmt.Fprintf(&s, "\nBeside the baseline binary `%s` (-baseline), runs alternating between the two: ratio = the baseline's processing time ÷ this binary's, per run (above 1: this binary is faster), and their median.\n\n", r.cfg.baseline)
		s.WriteString("| row | median ratio to the baseline | per run |\n|---|--:|---|\n")
		for _, p := range r.pairs {
			if p.rows[0].problem != "" || p.rows[1].problem != "" {
				fmt.Fprintf(&s, "| %s | FAILED | |\n", p.rows[0].name)
				continue
			}
			each := make([]string, len(p.each))
			for i, x := range p.each {
				each[i] = fmt.Sprintf("%.2f", x)
			}
			fmt.Fprintf(&s, "| %s | %.2f | %s |\n", p.rows[0].name, p.ratio, strings.Join(each, " "))
		}
	}
	if len(r.latency) > 0 {
		s.WriteString(r.latencyMarkdown())
	}
	return s.String()
}

func (r report) latencyMarkdown() string {
	var s strings.Builder
	s.WriteString("\n## Latency\n")
	fmt.Fprintf(&s, "\nLatency of a continuous pipeline (`batch: %s`), exactly-once: from the franz-go producer's Produce call (acks=1, no linger; the value starts with the time) to the record being readable in the output: by a read_committed consumer of the Kafka sink's topic, or in a committed part file of the file sink (`roll: {per-epoch: true}`, so each epoch is visible at its commit; the directory is listed every %v). Produced for %v once the pipeline delivered its first record; the first %v of that are not measured.\n\n",
		r.cfg.batch("0"), tick, r.cfg.latency, warmUp)
	s.WriteString("| mode | sink | rate records/s | p50 ms | p99 ms | max ms |\n")
	s.WriteString("|---|---|--:|--:|--:|--:|\n")
	for _, x := range r.latency {
		if x.problem != "" {
			fmt.Fprintf(&s, "| %s | %s | %d | FAILED: %s | | |\n", x.mode, x.sink, x.rate, oneLine(x.problem))
			continue
		}
		fmt.Fprintf(&s, "| %s | %s | %d | %s | %s | %s |\n", x.mode, x.sink, x.rate, ms(x.p50), ms(x.p99), ms(x.max))
	}
	return s.String()
}

// document is BENCHMARKS.md: how the tables were produced, then the tables.
func (r report) document(tables string) string {
	var s strings.Builder
	e := r.env
	s.WriteString("# Benchmarks\n\n")
	s.WriteString("Written by `bench/ingest` (do not edit by hand; run it again) with:\n\n")
	fmt.Fprintf(&s, "```sh\n%s\n```\n\n", r.cfg.commandLine)
	binary := "built from this tree"
	if r.cfg.sluice != "" {
		binary = "given with -sluice, not necessarily built from this tree"
	}
	fmt.Fprintf(&s, "- date: %s\n- commit: %s; sluice binary %s (`sluice version`: %s)\n- machine: %d CPUs, %s\n- Go: %s %s\n\n",
		e.date, e.commit, binary, e.sluiceVersion, e.cpus, e.cpuModel, e.goVersion, e.platform)
	s.WriteString("It measures what users run: the `sluice` binary as a subprocess, reading from a standalone `sluice broker` data that an independent client wrote, with each run's output counted afterwards (a run that lost or duplicated records is shown as FAILED, not as a figure). Absolute rates depend on the machine and on what else it was doing; compare rows by their ratio to the raw consumer, which was measured in the same run on the same data.\n\n")
	s.WriteString(tables)
	return s.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

// thousands formats v rounded, with commas between groups of three digits.
func thousands(v float64) string {
	d := strconv.FormatInt(int64(v+0.5), 10)
	var s strings.Builder
	for i, c := range d {
		if i > 0 && (len(d)-i)%3 == 0 {
			s.WriteByte(',')
		}
		s.WriteRune(c)
	}
	return s.String()
}

// oneLine keeps a table cell on one line and free of column separators.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", "/")
}
