package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/internal/record"
	"github.com/sluicehq/sluice/plugins/internal/shm"
	"github.com/sluicehq/sluice/plugins/internal/wire"
	pluginpb "github.com/sluicehq/sluice/plugins/proto"
)

// ParentPIDEnv names the variable in which the host passes its process id.
// A plugin that has it exits when its parent process goes away: the
// fallback for platforms (or races) where the parent-death signal does not
// fire.
const ParentPIDEnv = "SLUICE_PLUGIN_PARENT_PID"

// pluginGCPercent is the plugin process's GOGC unless GOGC is set. A
// plugin's live heap is small and its garbage comes in batch-sized bursts
// (request, records, response); collecting less often cut the GC share of
// a 10,000-record call by more than half, for a few batches of extra heap.
const pluginGCPercent = 400

// ShmFDEnv names the variable holding the descriptor of the shared memory
// file the host passed (see pluginpb.ConfigureRequest.shm_slots).
const ShmFDEnv = "SLUICE_PLUGIN_SHM_FD"

// parentPollInterval is how often a plugin checks that its host is alive;
// a plugin outlives a killed host by at most this long.
const parentPollInterval = 200 * time.Millisecond

// Serve runs t as a plugin process until the host stops it, then returns;
// call it last in main. Started by hand (not by a Sluice host), it
// prints a message saying so and exits with status 1.
func Serve(t Transform) {
	watchParent()
	startGuard()
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(pluginGCPercent)
	}
	defer profile()()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: pluginpb.Handshake,
		Plugins:         plugin.PluginSet{pluginpb.PluginName: &pluginpb.GoPlugin{Impl: NewServer(t)}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, pluginpb.ServerOptions()...)...)
		},
		Logger: hclogQuiet(),
	})
}

// ProfileEnv names a variable holding a file path: a plugin started with it
// set writes a CPU profile there until the host stops it gracefully. For
// profiling plugins under a real pipeline; each process appends a unique
// suffix to the name.
const ProfileEnv = "SLUICE_PLUGIN_CPUPROFILE"

func profile() (stop func()) {
	path := os.Getenv(ProfileEnv)
	if path == "" {
		return func() {}
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		Logger().Error("cannot write CPU profile", "err", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		Logger().Error("cannot start CPU profile", "err", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// watchParent exits the process when its parent goes away. The parent
// seen at start is watched rather than the host's pid, so a plugin started
// through a wrapper script still works; the variable only says that a
// Sluice host started it.
func watchParent() {
	host, err := strconv.Atoi(os.Getenv(ParentPIDEnv))
	if err != nil {
		return
	}
	parent := os.Getppid()
	if parent == 1 && host != 1 {
		// Reparented to init before this line ran: the host already died.
		os.Exit(2)
	}
	go func() {
		tick := time.NewTicker(parentPollInterval)
		defer tick.Stop()
		for range tick.C {
			if os.Getppid() != parent {
				Logger().Error("parent process is gone; exiting", "parent_pid", parent)
				os.Exit(2)
			}
		}
	}()
}

// NewServer returns the gRPC service for t. Serve uses it; tests use it
// with plugin.TestPluginGRPCConn.
func NewServer(t Transform) pluginpb.TransformServer {
	return &server{t: t}
}

// recordPool recycles decoded request slices: at large batch sizes,
// allocating and zeroing them was a visible share of a call's cost. A
// Transform may return its input slice as output; it is encoded before the
// slice goes back to the pool.
var recordPool sync.Pool

type server struct {
	pluginpb.UnimplementedTransformServer
	// mu serialises calls: authors write single-threaded Process methods.
	mu     sync.Mutex
	t      Transform
	region *shm.Region // set by Configure when the host shares memory
	broker *plugin.GRPCBroker
	// state reaches the host's State service; set by Configure in a
	// stateful step, nil otherwise (and then a call carries no state).
	state pluginpb.StateClient
}

// UseBroker keeps go-plugin's broker, over which a stateful step's
// Configure dials the host's State service.
func (s *server) UseBroker(b *plugin.GRPCBroker) { s.broker = b }

func (s *server) Configure(ctx context.Context, req *pluginpb.ConfigureRequest) (*pluginpb.ConfigureResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	raw := json.RawMessage(req.GetSettingsJson())
	if !json.Valid(raw) && len(raw) > 0 {
		return nil, status.Error(codes.InvalidArgument, "settings are not valid JSON")
	}
	if c, ok := s.t.(Configurer); ok {
		err := c.Configure(ctx, Settings{Raw: raw, Pipeline: req.GetPipeline(), Step: req.GetStep(), Worker: int(req.GetWorker())})
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	rw, ok := s.t.(recordWise)
	resp := &pluginpb.ConfigureResponse{PerRecord: ok && rw.recordWise()}
	if req.GetShmSlots() > 0 && s.region == nil {
		// Without the memory the host falls back to batches in messages.
		if fd, err := strconv.Atoi(os.Getenv(ShmFDEnv)); err == nil {
			r, err := shm.Open(os.NewFile(uintptr(fd), "shm"), int(req.GetShmSlots()), int(req.GetShmSlotBytes()))
			if err != nil {
				Logger().Warn("cannot map the host's shared memory; batches travel in messages", "err", err)
			} else {
				s.region = r
			}
		}
	}
	resp.Shm = s.region != nil
	if id := req.GetStateBroker(); id != 0 && s.state == nil {
		if s.broker == nil {
			return nil, status.Error(codes.Internal, "the host offered state, but this plugin process has no broker to reach it")
		}
		conn, err := s.broker.DialWithOptions(id, pluginpb.DialOptions()...)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "dial the host's state service: %v", err)
		}
		s.state = pluginpb.NewStateClient(conn)
	}
	return resp, nil
}

// process calls the Transform under the lock. A panic in a whole-batch
// Transform (a per-record one rejects the record itself) fails the batch
// with one line naming it, rather than crashing the process into a
// restart, a stack trace on the host's log and the same panic again.
func (s *server) process(ctx context.Context, in []Record) (out []Record, rejected []Rejected, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		if v := recover(); v != nil {
			out, rejected, err = nil, nil, panicError(v)
			Logger().Error("the transform panicked; failing the batch", "err", err, "stack", string(debug.Stack()))
		}
	}()
	return s.t.Process(ctx, in)
}

func (s *server) Process(ctx context.Context, req *pluginpb.ProcessRequest) (*pluginpb.ProcessResponse, error) {
	// Decoding and encoding happen outside the lock, so with two calls in
	// flight they overlap the other call's processing.
	pooled, _ := recordPool.Get().(*[]Record)
	if pooled == nil {
		pooled = new([]Record)
	}
	defer recordPool.Put(pooled)
	records, slot := req.GetRecords(), -1
	if n := req.GetSlotLen(); n > 0 {
		slot = int(req.GetSlot())
		if s.region == nil || !s.region.Valid(slot, n) {
			return nil, status.Errorf(codes.InvalidArgument, "request in shared memory slot %d (%d bytes) that this plugin did not map", slot, n)
		}
		// Valid until this call returns: the host does not touch the slot
		// before, and nothing here keeps it after.
		records = s.region.Request(slot)[:n]
	}
	in, err := wire.DecodeInto(*pooled, records)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "decode request: %v", err)
	}
	*pooled = in[:0]
	var st *Store
	if s.state != nil {
		st = newStore(ctx, remoteState{client: s.state, call: req.GetCall()}, in)
		ctx = context.WithValue(ctx, stateKey{}, st)
	}
	out, rejected, err := s.process(ctx, in)
	if err == nil && st != nil && st.err != nil {
		// A refused write the transform did not return: losing it
		// silently would break the state's exactly-once.
		err = st.err
	}
	if err != nil {
		code := codes.FailedPrecondition
		if record.IsRetryable(err) {
			code = codes.Aborted
		}
		return nil, status.Error(code, err.Error())
	}
	resp := &pluginpb.ProcessResponse{}
	if size := wire.Size(out); slot >= 0 && size <= s.region.SlotBytes() {
		resp.SlotLen = uint64(len(wire.Append(s.region.Response(slot), out)))
	} else {
		resp.Records = wire.Append(pluginpb.ResponseBuffer(size), out)
	}
	if len(rejected) > 0 {
		recs := make([]Record, len(rejected))
		resp.Reasons = make([]string, len(rejected))
		for i, r := range rejected {
			recs[i] = r.Record
			resp.Reasons[i] = r.Reason
		}
		resp.Rejected = wire.Append(nil, recs)
	}
	if st != nil {
		resp.StateWrites = st.appendWrites(nil)
	}
	if n := len(resp.Records) + len(resp.Rejected) + len(resp.StateWrites); n > pluginpb.MaxMessageBytes {
		return nil, status.Errorf(codes.ResourceExhausted,
			"plugin output of %d MiB for one call is over the %d MiB limit; lower the pipeline's batch.max-records-per-partition",
			n>>20, pluginpb.MaxMessageBytes>>20)
	}
	return resp, nil
}

var (
	loggerOnce sync.Once
	logger     *slog.Logger
)

// Logger returns the plugin's logger. Its lines reach the host's log with
// the step's name attached, and the last of them are quoted when the host
// gives up on the plugin. Prefer it to printing: what a plugin prints to
// os.Stdout or os.Stderr after Serve starts is forwarded asynchronously.
func Logger() *slog.Logger {
	loggerOnce.Do(func() {
		// fd 2 itself, not os.Stderr: go-plugin's Serve points os.Stderr at a
		// pipe streamed to the host asynchronously, which loses the last
		// lines when the process dies; fd 2 reaches the host directly.
		logger = newJSONLogger(os.NewFile(2, "stderr"))
	})
	return logger
}

func newJSONLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level:       slog.LevelDebug, // the host filters
		ReplaceAttr: hclogJSON,
	}))
}

// hclogJSON renames slog's keys to the ones go-plugin's host parses
// (hclog's JSON format), so levels and attributes survive the trip.
func hclogJSON(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.TimeKey:
		return slog.String("@timestamp", a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
	case slog.LevelKey:
		lv, _ := a.Value.Any().(slog.Level)
		name := "info"
		switch {
		case lv < slog.LevelInfo:
			name = "debug"
		case lv < slog.LevelWarn:
			name = "info"
		case lv < slog.LevelError:
			name = "warn"
		default:
			name = "error"
		}
		return slog.String("@level", name)
	case slog.MessageKey:
		return slog.String("@message", a.Value.String())
	}
	return a
}

// errNotConfigured is returned by Local's Process after a failed Configure.
var errNotConfigured = errors.New("transform not configured")

// LocalTransform is what Local returns: a Transform with Close, which is
// engine.Transform's method set, so the engine runs it like a plugin
// process.
type LocalTransform interface {
	Transform
	Close() error
}

// Local runs t in-process behind the engine.Transform interface, exactly as
// a plugin process would run it: settings are encoded to JSON and decoded
// by the same code, and rejected records carry step as their Plugin.
func Local(ctx context.Context, t Transform, step string, settings map[string]any) (LocalTransform, error) {
	raw, err := json.Marshal(settings)
	if err != nil {
		return nil, fmt.Errorf("settings of %s: %w", step, err)
	}
	if settings == nil {
		raw = []byte("{}")
	}
	if c, ok := t.(Configurer); ok {
		if err := c.Configure(ctx, Settings{Raw: raw, Step: step}); err != nil {
			return nil, fmt.Errorf("%s: %w", step, err)
		}
	}
	return &local{t: t, step: step, state: &memoryState{}}, nil
}

type local struct {
	t     Transform
	step  string
	state *memoryState
}

// Process runs the transform with a keyed state kept in memory across
// calls (State(ctx)), as a stateful step's host would keep it: a call's
// writes are kept only if it succeeds.
func (l *local) Process(ctx context.Context, in []Record) ([]Record, []Rejected, error) {
	if l.t == nil {
		return nil, nil, errNotConfigured
	}
	st := newStore(ctx, l.state, in)
	out, rejected, err := l.t.Process(context.WithValue(ctx, stateKey{}, st), in)
	if err == nil && st.err != nil {
		err = st.err
	}
	if err == nil {
		l.state.apply(st)
	}
	for i := range rejected {
		rejected[i].Plugin = l.step
	}
	return out, rejected, err
}

func (l *local) Close() error { return nil }
