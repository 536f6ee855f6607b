// Package daemon runs every pipeline in a directory next to the embedded
// broker, supervises them, reloads a pipeline whose file changed (drain,
// commit, restart) and serves the HTTP API and Prometheus metrics:
// `sluice daemon`.
package daemon

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/internal/builtinbroker"
	"github.com/sluicehq/sluice/internal/components"
	"github.com/sluicehq/sluice/sources/kafka"
	"github.com/sluicehq/sluice/state"
)

const (
	// ScanInterval is how often the pipelines directory is read for new,
	// changed and removed files.
	ScanInterval = 2 * time.Second
	// shutdownTimeout bounds the HTTP server's shutdown.
	shutdownTimeout = 5 * time.Second
	// readHeaderTimeout bounds a request's header, so a client that
	// never finishes one cannot hold a connection.
	readHeaderTimeout = 10 * time.Second
)

// restartBackoff bounds the wait before a failed pipeline is started again.
var restartBackoff = backoff.Policy{Min: time.Second, Max: time.Minute}

// Config configures a daemon.
type Config struct {
	PipelinesDir string
	DataDir      string
	HTTPAddr     string // "" = no HTTP server
	// TokenFile holds the bearer token of mutating API requests; generated
	// if absent. "" = TokenFileName in DataDir.
	TokenFile string
	// AllowedHosts are Host names the API answers besides its listen
	// address and localhost (NAME: any port, NAME:PORT: that port).
	AllowedHosts []string
	// Broker is the embedded broker's listeners and users; with no
	// listeners the broker is not started and pipelines with brokers:
	// [builtin] are refused. BrokerAddr, if set, adds a PLAINTEXT
	// listener there (what --broker-listen alone used to be).
	Broker     builtinbroker.Config
	BrokerAddr string
	Version    string
	Logger     *slog.Logger
	// ScanInterval overrides ScanInterval (tests).
	ScanInterval time.Duration
}

// Daemon runs many pipelines.
type Daemon struct {
	cfg      Config
	log      *slog.Logger
	reg      *prometheus.Registry
	opts     components.Options
	broker   *builtinbroker.Server // nil: off, or before Listen
	listened bool
	http     net.Listener
	token    *token // with http

	api *api

	mu        sync.Mutex
	pipelines map[string]*managed // by file path
}

// New checks cfg; Run starts everything.
func New(cfg Config) (*Daemon, error) {
	if cfg.PipelinesDir == "" {
		return nil, errors.New("--pipelines is required: the directory of pipeline files to run")
	}
	if st, err := os.Stat(cfg.PipelinesDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("--pipelines %s: not a directory; create it or point at the folder holding the pipeline files", cfg.PipelinesDir)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = ScanInterval
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_build_info", Help: "Always 1; the version label says which sluice runs.",
		ConstLabels: prometheus.Labels{"version": cfg.Version}})
	build.Set(1)
	reg.MustRegister(build)
	d := &Daemon{cfg: cfg, log: cfg.Logger, reg: reg, pipelines: map[string]*managed{}}
	d.opts = components.Options{
		DataDir:      cfg.DataDir,
		Logger:       cfg.Logger,
		Registerer:   reg,
		Metrics:      engine.NewMetrics(reg),
		KafkaMetrics: kafka.NewMetrics(reg),
		StateMetrics: state.NewMetrics(reg),
		BuiltinBroker: func(tls, sasl bool) (string, error) {
			if d.broker == nil {
				return "", builtinbroker.ErrOff
			}
			return d.broker.Addr(tls, sasl)
		},
	}
	d.api = &api{all: d.all, reg: reg, version: cfg.Version, mode: "daemon", actions: true, remove: d.remove}
	return d, nil
}

// HTTPAddr is where the HTTP API listens, once Run has started it.
func (d *Daemon) HTTPAddr() string {
	if d.http == nil {
		return ""
	}
	return d.http.Addr().String()
}

// BrokerAddr is where the embedded broker's first listener listens, once
// Run started it ("" when it is off).
func (d *Daemon) BrokerAddr() string {
	if d.broker == nil {
		return ""
	}
	return d.broker.Broker.Addr()
}

// Listen starts the embedded broker and the HTTP listener, so their
// addresses are known before Run.
func (d *Daemon) Listen() error {
	cfg := d.cfg.Broker
	if d.cfg.BrokerAddr != "" {
		cfg.Listeners = append(builtinbroker.Plain(d.cfg.BrokerAddr).Listeners, cfg.Listeners...)
	}
	d.listened = true
	if len(cfg.Listeners) == 0 {
		d.log.Info("embedded broker off: every --broker-*listen is off")
	} else {
		b, err := builtinbroker.Start(filepath.Join(d.cfg.DataDir, "broker"), cfg, d.log)
		if err != nil {
			return err
		}
		d.broker = b
		d.reg.MustRegister(b.Metrics().Collectors()...)
	}
	if d.cfg.HTTPAddr != "" {
		if err := d.listenHTTP(); err != nil {
			d.closeBroker()
			return err
		}
	}
	return nil
}

// listenHTTP loads or generates the API token, then listens. Beyond
// loopback it refuses a token file every user can read or write: the
// token is then no secret from anyone on this machine.
func (d *Daemon) listenHTTP() error {
	path := d.TokenFile()
	tok, generated, err := loadToken(path)
	if err != nil {
		return err
	}
	if generated {
		d.log.Info("generated the HTTP API token", "token_file", path)
	}
	l, err := net.Listen("tcp", d.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("--http %s: %w", d.cfg.HTTPAddr, err)
	}
	if loopback := l.Addr().(*net.TCPAddr).IP.IsLoopback(); tok.openToOthers() {
		if !loopback {
			l.Close()
			return fmt.Errorf("--http %s listens beyond this machine, but the token file %s is readable or writable by every user (mode %04o): run chmod 600 %s, or listen on 127.0.0.1", d.cfg.HTTPAddr, path, tok.mode, shellQuote(path))
		}
		d.log.Warn("the HTTP API token file is readable or writable by every user, who can then pause and restart pipelines; chmod 600 it", "token_file", path, "mode", fmt.Sprintf("%04o", tok.mode))
	}
	d.http, d.token = l, tok
	d.log.Info("HTTP API listening", "addr", l.Addr().String(), "token_file", path)
	return nil
}

// TokenFile is the path of the HTTP API's token file.
func (d *Daemon) TokenFile() string {
	if d.cfg.TokenFile != "" {
		return d.cfg.TokenFile
	}
	return filepath.Join(d.cfg.DataDir, TokenFileName)
}

// Run runs every pipeline until ctx ends, then drains them (each commits
// or abandons its batch in flight), stops the broker and returns nil.
func (d *Daemon) Run(ctx context.Context) error {
	if !d.listened {
		if err := d.Listen(); err != nil {
			return err
		}
	}
	var srv *http.Server
	if d.http != nil {
		srv = &http.Server{Handler: newGuard(d.api.handler(), d.token, d.http.Addr().(*net.TCPAddr), d.cfg.HTTPAddr, d.cfg.AllowedHosts), ReadHeaderTimeout: readHeaderTimeout}
		go srv.Serve(d.http)
	}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	go d.api.sampleEvery(sampleCtx, sampleInterval)
	d.scan(ctx)
	tick := time.NewTicker(d.cfg.ScanInterval)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			d.scan(ctx)
		}
	}
	d.log.Info("stopping: draining every pipeline")
	all := d.all()
	var wg sync.WaitGroup
	for _, m := range all {
		wg.Add(1)
		go func() { defer wg.Done(); m.stop() }()
	}
	wg.Wait()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		srv.Shutdown(sctx)
		cancel()
	}
	err := d.closeBroker()
	if err != nil {
		d.log.Error("stopped; closing the broker failed", "err", err)
	} else {
		d.log.Info("stopped", "pipelines", len(all))
	}
	return err
}

// closeBroker stops the embedded broker, if it runs.
func (d *Daemon) closeBroker() error {
	if d.broker == nil {
		return nil
	}
	return d.broker.Close()
}

// all returns the pipelines, in no order.
func (d *Daemon) all() []*managed {
	d.mu.Lock()
	defer d.mu.Unlock()
	all := make([]*managed, 0, len(d.pipelines))
	for _, m := range d.pipelines {
		all = append(all, m)
	}
	return all
}

// scan starts pipelines for new files, restarts those whose file changed
// and stops those whose file is gone.
func (d *Daemon) scan(ctx context.Context) {
	files, err := pipelineFiles(d.cfg.PipelinesDir)
	if err != nil {
		d.log.Error("reading the pipelines directory", "dir", d.cfg.PipelinesDir, "err", err)
		return
	}
	seen := map[string]bool{}
	for _, path := range files {
		seen[path] = true
		data, err := os.ReadFile(path)
		if err != nil {
			d.log.Error("reading a pipeline file", "file", path, "err", err)
			continue
		}
		sum := sha256.Sum256(data)
		d.mu.Lock()
		m := d.pipelines[path]
		d.mu.Unlock()
		switch {
		case m == nil:
			m = d.manage(ctx, path, data, sum)
			d.mu.Lock()
			d.pipelines[path] = m
			d.mu.Unlock()
		case m.sum != sum:
			d.log.Info("pipeline file changed: draining and restarting", "file", path)
			m.stop()
			m = d.manage(ctx, path, data, sum)
			d.mu.Lock()
			d.pipelines[path] = m
			d.mu.Unlock()
		}
	}
	d.mu.Lock()
	var gone []*managed
	for path, m := range d.pipelines {
		if !seen[path] {
			gone = append(gone, m)
			delete(d.pipelines, path)
		}
	}
	d.mu.Unlock()
	for _, m := range gone {
		d.log.Info("pipeline file removed: draining and stopping", "file", m.file)
		m.stop()
	}
}

// remove deletes a pipeline: it is drained and stopped, its file removed
// from the pipelines directory (so no scan starts it again), then its
// state: local stores and changelog topic. Removing only the file keeps
// the state, so a file moved away and back resumes where it was.
func (d *Daemon) remove(ctx context.Context, m *managed) error {
	m.stop()
	if err := os.Remove(m.file); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove %s: %w; the daemon needs write access to its pipelines directory", m.file, err)
	}
	d.mu.Lock()
	if d.pipelines[m.file] == m {
		delete(d.pipelines, m.file)
	}
	d.mu.Unlock()
	d.log.Info("pipeline deleted", "pipeline", m.name, "file", m.file)
	if m.spec == nil { // invalid: it never ran, so it has no state
		return nil
	}
	if err := components.DeleteState(ctx, m.spec, d.opts); err != nil {
		return fmt.Errorf("pipeline %s deleted, but not its state: %w", m.name, err)
	}
	return nil
}

func pipelineFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		files = append(files, filepath.Join(dir, name))
	}
	sort.Strings(files)
	return files, nil
}

// manage parses a pipeline file and, if it is valid and its name is free,
// starts supervising it.
func (d *Daemon) manage(ctx context.Context, path string, data []byte, sum [32]byte) *managed {
	m := &managed{file: path, sum: sum, log: d.log, metrics: d.opts.Metrics, resume: make(chan struct{}, 1), done: make(chan struct{})}
	spec, err := components.Builtin.Parse(path, data, os.LookupEnv)
	if err != nil {
		m.state, m.err = StateInvalid, err
		m.name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		close(m.done)
		d.log.Error("pipeline file is invalid; fix it and it is picked up", "file", path, "err", err)
		return m
	}
	m.name = spec.Name
	d.mu.Lock()
	for other, o := range d.pipelines {
		if other != path && o.name == spec.Name && o.valid() {
			d.mu.Unlock()
			m.state, m.err = StateInvalid, fmt.Errorf("%s: pipeline name %q is already used by %s; names must be unique", path, spec.Name, other)
			close(m.done)
			d.log.Error("duplicate pipeline name", "file", path, "name", spec.Name, "other", other)
			return m
		}
	}
	d.mu.Unlock()
	m.spec = spec // only now: a duplicate must not delete the other's state
	m.build = func(ctx context.Context) (*engine.Pipeline, error) {
		// Wait for the source (its brokers, its topics) before building, so
		// a topic not yet created is one line with the command that creates
		// it rather than a failed batch per retry. No timeout: the daemon
		// runs until stopped, and the topic may come at any time.
		if err := components.AwaitSource(ctx, spec, d.opts, 0); err != nil {
			return nil, err
		}
		return components.Build(ctx, spec, d.opts)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	go m.supervise(runCtx)
	return m
}
