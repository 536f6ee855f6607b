package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/plugins/builtin"
	"github.com/sluicehq/sluice/state"
)

// Defaults and hard limits of a plugin step.
const (
	// DefaultTimeout bounds one Process call when Config.Timeout is 0; a
	// call that takes longer counts as a hung plugin.
	DefaultTimeout = 30 * time.Second
	// MaxConsecutiveFailures is how many failed calls in a row (crashes,
	// hangs, retryable plugin errors) a worker survives; the next failure
	// stops the pipeline with the plugin's last stderr lines.
	MaxConsecutiveFailures = 5
	// MaxWorkers caps workers: each is a process with its own memory.
	MaxWorkers = 64
	// MaxTimeout caps timeout: a call that may take an hour is a job of
	// its own, not a step of a batch.
	MaxTimeout = time.Hour
	// MinMemory is the smallest memory limit. The limit counts private
	// writable address space, not resident memory, and a Go runtime maps
	// about 80 MiB of it (mostly untouched) before the plugin's first
	// record; a plugin built with cgo adds 8 MiB of stack per thread.
	MinMemory = 128 << 20
	// goRuntimeReserve is what a Go plugin's GOMEMLIMIT leaves of its
	// memory limit for what the runtime maps besides the heap.
	goRuntimeReserve = 96 << 20
	// MaxMemory caps memory: above a TiB the limit is no limit.
	MaxMemory = 1 << 40
	// restartBackoffMin and restartBackoffMax bound the wait before a
	// crashed or hung plugin is started again; it doubles per failure.
	restartBackoffMin = 100 * time.Millisecond
	restartBackoffMax = 10 * time.Second
)

// Config describes one transform step of one pipeline.
type Config struct {
	Pipeline string
	// Name names the step in logs, metrics and rejected records; defaults
	// to Plugin.
	Name string
	// Plugin is a built-in plugin name (see builtin.Names) or a path to a
	// plugin executable (anything containing a slash). A relative path is
	// resolved against the working directory here; sluice run resolves it
	// against the pipeline file's directory before.
	Plugin   string
	Settings map[string]any
	// Workers is how many plugin processes serve the step (default 1).
	Workers int
	// SHA256, if set, is the hex SHA-256 the plugin executable must have;
	// it is checked before every launch.
	SHA256 string
	// Timeout bounds one Process call (default DefaultTimeout).
	Timeout time.Duration
	// Memory caps each plugin process's memory, in bytes (0: no limit):
	// RLIMIT_DATA on Linux, inherited by what the plugin starts; a plugin
	// that runs out fails with an error naming the limit. Linux only.
	Memory int64
	// Logger receives the host's and the plugin's log lines (default
	// slog.Default()).
	Logger *slog.Logger
	// Registerer is where sluice_plugin_restarts_total is registered; nil
	// means no metrics.
	Registerer prometheus.Registerer
	// MaxFailures overrides MaxConsecutiveFailures (tests).
	MaxFailures int
	// State: the plugin keeps keyed state (sdk.State), served by the host
	// from the batch's state.View under Namespace (default: Name). The
	// pipeline must keep state (delivery: exactly-once).
	State     bool
	Namespace string
	// NoSharedMemory sends batches inside the gRPC messages even where
	// shared memory is available (Linux). For comparison and tests.
	NoSharedMemory bool
}

// Transform is a running plugin step. It implements engine.Transform and is
// safe for one Process call at a time, like every engine.Transform.
type Transform struct {
	cfg      Config
	name     string
	workers  []*worker
	restarts prometheus.Counter
	log      *slog.Logger
	closeMu  sync.Mutex
	closed   bool
	closing  chan struct{} // closed by Close: ends a restart backoff early
	// ns is the step's state namespace; stateMu serialises the workers'
	// use of the batch's View (a View is used by one goroutine at a time).
	ns      string
	stateMu sync.Mutex
}

var _ engine.Transform = (*Transform)(nil)

// New validates cfg, starts the step's plugin processes and configures
// them. ctx bounds only the start; the processes live until Close.
func New(ctx context.Context, cfg Config) (*Transform, error) {
	if cfg.Name == "" {
		cfg.Name = cfg.Plugin
	}
	if cfg.Workers == 0 {
		cfg.Workers = 1
	}
	if cfg.Workers < 0 || cfg.Workers > MaxWorkers {
		return nil, fmt.Errorf("transform %s: workers: %d is out of range; use 1 to %d", cfg.Name, cfg.Workers, MaxWorkers)
	}
	if cfg.Memory < 0 || cfg.Memory > 0 && (cfg.Memory < MinMemory || cfg.Memory > MaxMemory) {
		return nil, fmt.Errorf("transform %s: memory: %s is out of range; use %s to %s", cfg.Name, pipelines.ByteSize(cfg.Memory), pipelines.ByteSize(MinMemory), pipelines.ByteSize(MaxMemory))
	}
	if cfg.Memory > 0 && !memoryLimitSupported {
		return nil, fmt.Errorf("transform %s: %w", cfg.Name, errMemoryLinuxOnly)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Timeout > MaxTimeout {
		return nil, fmt.Errorf("transform %s: timeout: %s is out of range; use at most %s", cfg.Name, cfg.Timeout, MaxTimeout)
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = MaxConsecutiveFailures
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Namespace == "" {
		cfg.Namespace = cfg.Name
	}
	if cfg.State && len(cfg.Namespace) > state.MaxNamespaceBytes {
		return nil, fmt.Errorf("transform %s: its state namespace %.40q... is over %d bytes; give the step a shorter name", cfg.Name, cfg.Namespace, state.MaxNamespaceBytes)
	}
	l, err := resolve(cfg)
	if err != nil {
		return nil, fmt.Errorf("transform %s: %w", cfg.Name, err)
	}
	settings := []byte("{}")
	if cfg.Settings != nil {
		if settings, err = json.Marshal(cfg.Settings); err != nil {
			return nil, fmt.Errorf("transform %s: settings: %w", cfg.Name, err)
		}
	}
	t := &Transform{
		cfg:      cfg,
		name:     cfg.Name,
		restarts: restartsCounter(cfg.Registerer, cfg.Pipeline, cfg.Name),
		log:      cfg.Logger.With("pipeline", cfg.Pipeline, "plugin", cfg.Name),
		closing:  make(chan struct{}),
		ns:       cfg.Namespace,
	}
	for i := range cfg.Workers {
		w := &worker{t: t, index: i, launch: l, settings: settings}
		if cfg.State {
			w.state = &stateServer{t: t}
		}
		t.workers = append(t.workers, w)
	}
	// Start every worker now, so a bad plugin or bad settings fail the
	// pipeline at start-up rather than at its first batch.
	errs := make([]error, len(t.workers))
	var wg sync.WaitGroup
	for i, w := range t.workers {
		wg.Go(func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			errs[i] = w.start(ctx)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// launch says how to start the plugin's process.
type launch struct {
	path    string   // executable
	env     []string // extra environment
	display string   // what the user wrote
	sha256  []byte
}

func resolve(cfg Config) (launch, error) {
	p := cfg.Plugin
	if p == "" {
		return launch{}, errors.New("plugin: give a built-in name (" + strings.Join(builtin.Names(), ", ") + ") or a path to a plugin executable")
	}
	if !strings.ContainsRune(p, '/') && !strings.ContainsRune(p, filepath.Separator) {
		if _, ok := builtin.Lookup(p); !ok {
			return launch{}, fmt.Errorf("plugin %q is not a built-in (%s); for a plugin executable give its path, such as ./%s", p, strings.Join(builtin.Names(), ", "), p)
		}
		if cfg.SHA256 != "" {
			return launch{}, fmt.Errorf("sha256 applies to plugin executables, not to the built-in %q; remove it", p)
		}
		self, err := os.Executable()
		if err != nil {
			return launch{}, fmt.Errorf("find the sluice executable to run built-in %q: %w", p, err)
		}
		return launch{path: self, env: []string{builtin.EnvName + "=" + p}, display: p}, nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return launch{}, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return launch{}, fmt.Errorf("plugin %s: %w; build it first (go build -o %s) or fix the path", p, err, p)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return launch{}, fmt.Errorf("plugin %s is not an executable file; give the path of the built plugin binary", p)
	}
	l := launch{path: abs, display: p}
	if cfg.SHA256 != "" {
		sum, err := hex.DecodeString(cfg.SHA256)
		if err != nil || len(sum) != sha256.Size {
			return launch{}, fmt.Errorf("sha256 %q: want 64 hex digits, as printed by `sha256sum %s`", cfg.SHA256, p)
		}
		l.sha256 = sum
	}
	return l, nil
}

// fileSHA256 is used only to say what the sum actually is when it does not
// match.
func fileSHA256(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "unreadable: " + err.Error()
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Process sends each partition's records to its worker, the workers in
// parallel, and returns the outputs worker by worker: order within a
// partition is kept, order across partitions is not. ctx bounds this call.
func (t *Transform) Process(ctx context.Context, in []engine.Record) ([]engine.Record, []engine.Rejected, error) {
	if len(t.workers) == 1 {
		return t.workers[0].process(ctx, in)
	}
	parts := t.split(in)
	type result struct {
		out []engine.Record
		rej []engine.Rejected
		err error
	}
	results := make([]result, len(t.workers))
	var wg sync.WaitGroup
	for i, part := range parts {
		if len(part) == 0 {
			continue
		}
		wg.Go(func() {
			r := &results[i]
			r.out, r.rej, r.err = t.workers[i].process(ctx, part)
		})
	}
	wg.Wait()
	var (
		out  []engine.Record
		rej  []engine.Rejected
		errs []error
	)
	n := 0
	for _, r := range results {
		n += len(r.out)
	}
	out = make([]engine.Record, 0, n)
	for _, r := range results {
		out = append(out, r.out...)
		rej = append(rej, r.rej...)
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	if len(errs) > 0 {
		return nil, nil, joinErrors(errs)
	}
	return out, rej, nil
}

// joinErrors keeps the batch retryable only if every failure was.
func joinErrors(errs []error) error {
	err := errors.Join(errs...)
	for _, e := range errs {
		if !engine.IsRetryable(e) {
			return err
		}
	}
	return engine.Retryable(err)
}

// split spreads partitions over workers. Consecutive partitions of a topic
// go to consecutive workers, so P partitions fill min(P, N) workers evenly,
// and a partition always lands on the same worker (plugins that keep state
// per key see all of a partition).
func (t *Transform) split(in []engine.Record) [][]engine.Record {
	n := len(t.workers)
	parts := make([][]engine.Record, n)
	var (
		lastTopic string
		lastHash  uint32
		haveLast  bool
	)
	for i := range in {
		r := &in[i]
		if !haveLast || r.Topic != lastTopic {
			h := fnv.New32a()
			h.Write([]byte(r.Topic))
			lastTopic, lastHash, haveLast = r.Topic, h.Sum32(), true
		}
		w := (uint64(lastHash) + uint64(uint32(r.Partition))) % uint64(n)
		parts[w] = append(parts[w], *r)
	}
	return parts
}

// Close stops the plugin processes, gracefully if they answer.
func (t *Transform) Close() error {
	t.closeMu.Lock()
	defer t.closeMu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	close(t.closing)
	var wg sync.WaitGroup
	for _, w := range t.workers {
		wg.Go(w.stop)
	}
	wg.Wait()
	return nil
}

// PIDs returns the process ids of the running plugin processes (0 for a
// worker that is between restarts).
func (t *Transform) PIDs() []int {
	pids := make([]int, len(t.workers))
	for i, w := range t.workers {
		pids[i] = w.pid()
	}
	return pids
}

// Name is the step's name in logs and metrics: the plugin and its position
// in the pipeline ("uppercase#1").
func (t *Transform) Name() string { return t.name }
