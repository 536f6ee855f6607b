package main

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/daemon"
	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/logging"
)

const (
	// progressRedraw is how often the terminal line is redrawn: often
	// enough to look live, rarely enough to cost nothing.
	progressRedraw = 500 * time.Millisecond
	// progressRateSamples spans the terminal line's rate over 5 s of
	// redraws, smoothing batches that commit a few times a second.
	progressRateSamples = 11
	// defaultProgressEvery is how often a progress line is logged off a
	// terminal: a log that tells a stalled run from a slow one without
	// filling up.
	defaultProgressEvery = 10 * time.Second
	// maxNameWidth keeps the terminal line on one row of an 80-column
	// terminal: a longer pipeline name is cut.
	maxNameWidth = 20
	// clearEOL erases from the cursor to the end of the line (ANSI EL).
	clearEOL = "\x1b[K"
)

// runStatus is what `sluice run` reports while a pipeline runs: the live
// progress (one line redrawn on a terminal, an info line every
// --progress-every off one), the summary at exit and, with --http, the
// status page.
type runStatus struct {
	quiet        bool
	every        time.Duration
	httpAddr     string
	allowedHosts []string

	term    *termLine // on a terminal, unless quiet
	restore *slog.Logger
	name    string
	p       *engine.Pipeline
	metrics *engine.Metrics
	began   time.Time
	http    *daemon.Foreground
	stopped chan struct{}
	done    sync.WaitGroup
}

func (rs *runStatus) register(f *pflag.FlagSet) {
	f.BoolVarP(&rs.quiet, "quiet", "q", false, "no live progress: neither the line redrawn on a terminal nor the progress log lines (the summary at exit stays)")
	f.DurationVar(&rs.every, "progress-every", defaultProgressEvery, "off a terminal, log a progress line this often")
	f.StringVar(&rs.httpAddr, "http", "", "serve the status page (/), the read-only API (/pipelines), /metrics, /healthz and /readyz on this address; a port alone (8080, :8080) listens on loopback only")
	f.StringArrayVar(&rs.allowedHosts, "http-allowed-host", nil, "a Host name --http also answers, NAME (any port) or NAME:PORT (repeatable)")
}

// setup runs before the pipeline is built: on a terminal, the log goes
// through the progress line so a log record never lands in its middle.
// A pipeline whose sink writes records to the terminal (stdout) gets the
// progress log lines instead: a line redrawn among its output would
// garble it.
func (rs *runStatus) setup(cmd *cobra.Command, sinkToStdout bool) error {
	if rs.every <= 0 {
		return fmt.Errorf("--progress-every %v: use a positive duration such as 10s", rs.every)
	}
	w := cmd.ErrOrStderr()
	if rs.quiet || !drawsInPlace(w) || sinkToStdout && drawsInPlace(cmd.OutOrStdout()) {
		return nil
	}
	rs.term = &termLine{w: w}
	logger, err := newLogger(cmd, rs.term)
	if err != nil {
		return err
	}
	rs.restore = slog.Default()
	slog.SetDefault(logger)
	return nil
}

// start begins reporting p, counted in metrics (registered in reg).
func (rs *runStatus) start(name, file string, p *engine.Pipeline, reg *prometheus.Registry, metrics *engine.Metrics) error {
	rs.name, rs.p, rs.metrics, rs.began = name, p, metrics, time.Now()
	if rs.httpAddr != "" {
		f, err := daemon.ServeForeground(daemon.ForegroundConfig{Addr: rs.httpAddr, AllowedHosts: rs.allowedHosts,
			Registry: reg, Metrics: metrics, Version: version, Logger: slog.Default()}, name, file, p)
		if err != nil {
			return err
		}
		rs.http = f
	}
	if rs.quiet {
		return nil
	}
	rs.stopped = make(chan struct{})
	rs.done.Add(1)
	go rs.report()
	return nil
}

// report draws the terminal line or logs progress lines until stop.
func (rs *runStatus) report() {
	defer rs.done.Done()
	interval, window := rs.every, 2
	if rs.term != nil {
		interval, window = progressRedraw, progressRateSamples
	}
	meter := engine.NewMeter(window)
	meter.Add(rs.began, engine.Totals{})
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-rs.stopped:
			return
		case now := <-tick.C:
			t := rs.metrics.Totals(rs.name)
			meter.Add(now, t)
			in, _ := meter.Rates()
			v := progressView{name: rs.name, rate: in, totals: t, status: rs.p.Status(), now: now}
			if rs.term != nil {
				rs.term.draw(v.line())
			} else {
				slog.Info("progress", v.attrs()...)
			}
		}
	}
}

// stop ends the progress (clearing the terminal line) and the HTTP
// server, and returns the summary to log with the run's last line.
func (rs *runStatus) stop(runErr error) []any {
	if rs.stopped != nil {
		close(rs.stopped)
		rs.done.Wait()
		rs.stopped = nil
	}
	if rs.term != nil {
		rs.term.clear()
	}
	if rs.restore != nil {
		slog.SetDefault(rs.restore)
		rs.restore = nil
	}
	if rs.http != nil {
		rs.http.Close(runErr)
		rs.http = nil
	}
	if rs.metrics == nil {
		return nil
	}
	t := rs.metrics.Totals(rs.name)
	took := time.Since(rs.began)
	return []any{"records_in", t.In, "records_out", t.Out, "records_rejected", t.Rejected, "epochs", t.Batches,
		"took", took.Round(time.Millisecond), "records_per_sec", perSec(t.In, took)}
}

func perSec(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return round1(float64(n) / d.Seconds())
}

// round1 rounds to one decimal: a log shows 2001.3, not 2001.2894736842.
func round1(x float64) float64 { return math.Round(x*10) / 10 }

// newLogger is the logger the root command made from --log-format and
// --log-level, writing to w.
func newLogger(cmd *cobra.Command, w io.Writer) (*slog.Logger, error) {
	return logging.New(w, cmd.Flag("log-format").Value.String(), cmd.Flag("log-level").Value.String())
}

// progressView is one moment of a run, as the progress line shows it.
type progressView struct {
	name   string
	rate   float64 // records in per second
	totals engine.Totals
	status engine.Status
	now    time.Time
}

// line is the terminal line: rate, total, lag, epoch, last commit.
func (v progressView) line() string {
	name := v.name
	if len(name) > maxNameWidth {
		name = name[:maxNameWidth-1] + "…"
	}
	lag := "?"
	if n, ok := v.status.Lag(); ok {
		lag = strconv.FormatInt(n, 10)
	}
	commit := "none yet"
	if !v.status.LastCommit.IsZero() {
		commit = v.now.Sub(v.status.LastCommit).Round(time.Second).String() + " ago"
	}
	return fmt.Sprintf("%s: %.0f rec/s, %d in, lag %s, epoch %d, last commit %s", name, v.rate, v.totals.In, lag, v.status.Epoch, commit)
}

// attrs are the progress log line's attributes.
func (v progressView) attrs() []any {
	a := []any{"pipeline", v.name, "records_per_sec", round1(v.rate),
		"records_in", v.totals.In, "records_out", v.totals.Out, "epoch", v.status.Epoch}
	if n, ok := v.status.Lag(); ok {
		a = append(a, "lag", n)
	}
	if !v.status.LastCommit.IsZero() {
		a = append(a, "last_commit", v.status.LastCommit.UTC().Format(time.RFC3339))
	}
	if v.status.Retrying != nil {
		a = append(a, "retrying", v.status.Retrying.Error())
	}
	return a
}

// termLine is a terminal's last line, redrawn in place, with the log
// written above it: a log record clears the line, is written, and the
// line is drawn again below it.
type termLine struct {
	mu   sync.Mutex
	w    io.Writer
	line string // what is drawn now; "" = nothing
}

func (t *termLine) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.line != "" {
		io.WriteString(t.w, "\r"+clearEOL)
	}
	n, err := t.w.Write(b)
	if t.line != "" {
		io.WriteString(t.w, t.line)
	}
	return n, err
}

func (t *termLine) draw(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.line = line
	io.WriteString(t.w, "\r"+line+clearEOL)
}

func (t *termLine) clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.line != "" {
		io.WriteString(t.w, "\r"+clearEOL)
	}
	t.line = ""
}

// drawsInPlace reports whether w is a terminal that understands \r and
// ANSI erase (not TERM=dumb).
func drawsInPlace(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && os.Getenv("TERM") != "dumb" && isTerminal(f)
}
