package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/engine"
)

// ForegroundConfig configures the HTTP server of one pipeline run in the
// foreground (`sluice run --http`).
type ForegroundConfig struct {
	// Addr is where to listen; without a host (":8080" or "8080") it is
	// loopback.
	Addr string
	// AllowedHosts are Host names answered besides the listen address and
	// localhost, as the daemon's.
	AllowedHosts []string
	Registry     *prometheus.Registry
	Metrics      *engine.Metrics // the counters p counts into
	Version      string
	Logger       *slog.Logger
}

// Foreground serves GET /, /pipelines, /pipelines/{name}, /metrics,
// /healthz and /readyz for one pipeline, behind the daemon's Host and
// origin checks. It has nothing to pause or restart, so it needs no token:
// those requests answer 405.
type Foreground struct {
	l    net.Listener
	srv  *http.Server
	m    *managed
	stop context.CancelFunc
}

// ServeForeground listens on cfg.Addr and serves p's status until Close.
func ServeForeground(cfg ForegroundConfig, name, file string, p *engine.Pipeline) (*Foreground, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	addr := LoopbackByDefault(cfg.Addr)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w; pick a free port", cfg.Addr, err)
	}
	m := &managed{file: file, name: name, log: cfg.Logger, metrics: cfg.Metrics, state: StateRunning, p: p, started: time.Now(),
		build: func(context.Context) (*engine.Pipeline, error) { return p, nil }, done: make(chan struct{})}
	a := &api{all: func() []*managed { return []*managed{m} }, reg: cfg.Registry, version: cfg.Version, mode: "run",
		readOnlyHint: "sluice run serves a read-only API: stop it with Ctrl-C or SIGTERM; sluice daemon can pause, resume and restart pipelines"}
	ctx, stop := context.WithCancel(context.Background())
	go a.sampleEvery(ctx, sampleInterval)
	f := &Foreground{l: l, m: m, stop: stop, srv: &http.Server{
		Handler:           newGuard(a.handler(), nil, l.Addr().(*net.TCPAddr), addr, cfg.AllowedHosts),
		ReadHeaderTimeout: readHeaderTimeout,
	}}
	go f.srv.Serve(l)
	cfg.Logger.Info("HTTP status page listening", "addr", "http://"+l.Addr().String()+"/")
	return f, nil
}

// LoopbackByDefault gives an address without a host ("8080", ":8080")
// the loopback host, so listening beyond this machine is asked for by
// name (0.0.0.0:8080).
func LoopbackByDefault(addr string) string {
	if !strings.Contains(addr, ":") {
		addr = ":" + addr
	}
	if strings.HasPrefix(addr, ":") {
		return "127.0.0.1" + addr
	}
	return addr
}

// Addr is where the server listens.
func (f *Foreground) Addr() string { return f.l.Addr().String() }

// Close reports the pipeline stopped (err: failed) and shuts the server
// down, letting requests in flight finish.
func (f *Foreground) Close(err error) {
	f.m.set(StateStopped, nil)
	if err != nil {
		f.m.set(StateFailed, err)
	}
	f.stop()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	f.srv.Shutdown(ctx)
}
