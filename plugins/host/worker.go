package host

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/plugins/internal/shm"
	"github.com/sluicehq/sluice/plugins/internal/wire"
	pluginpb "github.com/sluicehq/sluice/plugins/proto"
	"github.com/sluicehq/sluice/plugins/sdk"
)

var errClosed = errors.New("transform is closed")

// shmSlotBytes is the size of one shared-memory request or response area:
// a pipelined chunk (pipelineChunkRecords records) of records up to about
// 2 KiB fits; larger payloads travel in the gRPC message. Pages are only
// allocated when touched.
const shmSlotBytes = 4 << 20

// startTimeout bounds a plugin's start-up (exec to handshake), apart from
// the per-call timeout: a short call timeout must not fail a slow start.
const startTimeout = 30 * time.Second

// worker owns one plugin process and restarts it when it fails.
type worker struct {
	t        *Transform
	index    int
	launch   launch
	settings []byte

	mu        sync.Mutex // one call at a time; guards everything below
	client    *plugin.Client
	rpc       pluginpb.TransformClient
	procID    int
	stderr    *tail
	starts    int       // processes started so far
	failures  int       // consecutive failed calls
	nextStart time.Time // restart backoff
	fatal     error     // once set, every call returns it
	perRecord bool      // the plugin accepts a batch in pipelined chunks
	region    *shm.Region
	slots     chan int     // free shared-memory slots (nil without a region)
	tainted   atomic.Bool  // a slot may still be in use by an abandoned call
	state     *stateServer // a stateful step's; nil otherwise
}

func (w *worker) pid() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.procID
}

// start launches and configures the process. Called with mu held.
func (w *worker) start(ctx context.Context) error {
	if wait := time.Until(w.nextStart); wait > 0 {
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-w.t.closing:
			timer.Stop()
			return errClosed
		case <-timer.C:
		}
	}
	cfg := w.t.cfg
	if w.launch.sha256 != nil {
		// Checked here rather than by go-plugin (SecureConfig), which
		// checks only a Cmd it starts itself.
		if got := fileSHA256(w.launch.path); got != hex.EncodeToString(w.launch.sha256) {
			// The binary changed under us: never run it.
			w.fatal = fmt.Errorf("plugin %s: its sha256 is %s, not %s as the pipeline says; if you rebuilt it on purpose, update sha256:",
				w.launch.display, got, cfg.SHA256)
			return w.fatal
		}
	}
	cmd := exec.Command(w.launch.path)
	// Appended to the environment go-plugin prepares (see newRunner).
	cmd.Env = append(slices.Clip(w.launch.env), sdk.ParentPIDEnv+"="+strconv.Itoa(os.Getpid()))
	if cfg.Memory > 0 {
		if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
			// A Go plugin collects harder as it nears its limit instead
			// of running into it.
			cmd.Env = append(cmd.Env, "GOMEMLIMIT="+strconv.FormatInt(max(cfg.Memory-goRuntimeReserve, cfg.Memory/2), 10))
		}
	}
	isolate(cmd)
	var memFile *os.File
	if !w.t.cfg.NoSharedMemory {
		region, f, err := shm.Create(pipelineDepth, shmSlotBytes)
		if err == nil {
			w.region, memFile = region, f
			cmd.ExtraFiles = []*os.File{f} // descriptor 3 in the plugin
			cmd.Env = append(cmd.Env, sdk.ShmFDEnv+"=3")
		} else if !errors.Is(err, shm.ErrUnsupported) {
			w.t.log.Warn("no shared memory for the plugin; batches travel in messages", "err", err)
		}
	}
	// The plugin holds its own descriptor once started.
	defer func() {
		if memFile != nil {
			memFile.Close()
		}
	}()
	w.stderr = &tail{}
	var run *procRunner
	cc := &plugin.ClientConfig{
		HandshakeConfig: pluginpb.Handshake,
		Plugins:         plugin.PluginSet{pluginpb.PluginName: &pluginpb.GoPlugin{}},
		RunnerFunc: func(_ hclog.Logger, base *exec.Cmd, _ string) (runner.Runner, error) {
			r, err := newRunner(cmd, base, cfg.Memory)
			run = r
			return r, err
		},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           newHCLog(w.t.log.With("worker", w.index)),
		Stderr:           w.stderr,
		// What the plugin prints after go-plugin took over its stdio.
		SyncStdout:      &lineLogger{log: w.t.log.With("worker", w.index, "stream", "stdout"), tail: w.stderr},
		SyncStderr:      &lineLogger{log: w.t.log.With("worker", w.index, "stream", "stderr"), tail: w.stderr},
		GRPCDialOptions: pluginpb.DialOptions(),
		StartTimeout:    startTimeout,
	}
	client := plugin.NewClient(cc)
	w.starts++
	if w.starts > 1 {
		w.t.restarts.Inc()
		w.t.log.Warn("restarting plugin", "worker", w.index, "consecutive_failures", w.failures)
	}
	rpcClient, err := client.Client()
	if err != nil {
		client.Kill()
		if run != nil && run.pid > 0 {
			killGroup(run.pid)
		}
		w.dropRegion()
		if w.outOfMemory() {
			return w.memoryError()
		}
		return fmt.Errorf("start plugin %s: %w; its stderr:\n%s", w.launch.display, err, w.stderr)
	}
	raw, err := rpcClient.Dispense(pluginpb.PluginName)
	if err != nil {
		client.Kill()
		killGroup(run.pid)
		w.dropRegion()
		return fmt.Errorf("plugin %s does not serve a Sluice transform: %w", w.launch.display, err)
	}
	hc := raw.(*pluginpb.HostClient)
	w.client, w.rpc = client, hc
	w.procID = run.pid

	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	creq := &pluginpb.ConfigureRequest{
		SettingsJson: w.settings, Pipeline: cfg.Pipeline, Step: w.t.name, Worker: uint32(w.index),
	}
	if w.region != nil {
		creq.ShmSlots, creq.ShmSlotBytes = uint32(w.region.Slots()), uint64(w.region.SlotBytes())
	}
	if w.state != nil {
		creq.StateBroker = w.state.serve(hc.Broker)
	}
	resp, err := w.rpc.Configure(cctx, creq)
	if err != nil {
		w.kill()
		if status.Code(err) == codes.InvalidArgument {
			// Settings will not get better by retrying.
			w.fatal = fmt.Errorf("transform %s: %s", w.t.name, status.Convert(err).Message())
			return w.fatal
		}
		return fmt.Errorf("configure plugin %s: %w", w.launch.display, err)
	}
	// A stateful step's chunks run one after the other, never pipelined:
	// a chunk must read what the chunk before it wrote.
	w.perRecord = resp.GetPerRecord() && w.state == nil
	w.slots = nil
	if w.region != nil && !resp.GetShm() {
		w.dropRegion() // a plugin built with an SDK without shared memory
	}
	if w.region != nil {
		w.slots = make(chan int, w.region.Slots())
		for i := range w.region.Slots() {
			w.slots <- i
		}
	}
	return nil
}

// dropRegion unmaps the shared memory; the process using it must be gone
// (or never have been told about it).
func (w *worker) dropRegion() {
	if w.region != nil {
		w.region.Close()
		w.region, w.slots = nil, nil
	}
	w.tainted.Store(false)
}

// kill ends the process at once (it failed: no graceful shutdown).
func (w *worker) kill() {
	if w.client == nil {
		return
	}
	if w.procID > 0 {
		killGroup(w.procID)
	}
	w.client.Kill() // reaps it and waits for its stderr to drain
	w.client, w.rpc, w.procID = nil, nil, 0
	w.dropRegion()
}

func (w *worker) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.client != nil {
		w.client.Kill() // gracefully if it answers
		// Then whatever it started: its group outlives it while a member
		// lives, so the id is still the group's.
		killGroup(w.procID)
		w.client, w.rpc, w.procID = nil, nil, 0
	}
	w.dropRegion()
	if w.fatal == nil {
		w.fatal = fmt.Errorf("transform %s: %w", w.t.name, errClosed)
	}
}

func (w *worker) process(ctx context.Context, in []engine.Record) ([]engine.Record, []engine.Rejected, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fatal != nil {
		return nil, nil, w.fatal
	}
	if len(in) == 0 {
		return nil, nil, nil // nothing to ask the plugin
	}
	defer func() {
		if w.tainted.Load() {
			w.kill() // with its shared memory; the next call starts afresh
		}
	}()
	if w.rpc == nil {
		if err := w.start(ctx); err != nil {
			if w.fatal != nil || ctx.Err() != nil || errors.Is(err, errClosed) {
				return nil, nil, err
			}
			return nil, nil, w.failed(err)
		}
	}
	if w.state != nil {
		return w.processStateful(ctx, in)
	}
	chunks := w.chunks(in)
	if len(chunks) == 1 {
		resp, err := w.call(ctx, chunks[0], 0)
		if err != nil {
			return nil, nil, w.callFailed(ctx, err)
		}
		out, rej, err := w.decode(nil, resp)
		if err != nil {
			return nil, nil, w.callFailed(ctx, err)
		}
		w.failures = 0
		return out, rej, nil
	}
	// Keep pipelineDepth calls in flight: while the plugin processes one
	// chunk, the next is encoded and sent and the previous answer decoded,
	// on both sides of the socket. Answers are decoded in chunk order
	// straight into one output slice.
	done := make([]chan callResult, len(chunks))
	for i := range done {
		done[i] = make(chan callResult, 1)
	}
	// Cancelled at the first failure that is not the plugin's answer (a
	// hang, a crash), so that calls queued behind a hung one do not each
	// wait out their own timeout.
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		sem := make(chan struct{}, pipelineDepth)
		for i, c := range chunks {
			sem <- struct{}{}
			go func() {
				resp, err := w.call(bctx, c, 0)
				<-sem
				done[i] <- callResult{resp, err}
			}()
		}
	}()
	// Per-record plugins mostly emit at most one record per input.
	out := make([]engine.Record, 0, len(in))
	var (
		rej      []engine.Rejected
		firstErr error
	)
	for _, ch := range done {
		r := <-ch
		if firstErr != nil {
			continue // drain, so no call outlives this one
		}
		if r.err != nil {
			firstErr = r.err
			if !pluginReported(r.err) {
				cancel() // the process is replaced: stop waiting on it
			}
			continue
		}
		var err error
		if out, rej, err = w.decodeAppend(out, rej, r.resp); err != nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, nil, w.callFailed(ctx, firstErr)
	}
	w.failures = 0
	return out, rej, nil
}

// Chunking of a batch into Process calls.
const (
	// pipelineChunkRecords is the chunk size for per-record plugins: small
	// enough that a 10,000-record batch keeps the pipeline busy, large
	// enough that per-call overhead stays small.
	pipelineChunkRecords = 2000
	// pipelineDepth is how many calls per worker are in flight at once.
	pipelineDepth = 2
)

// chunks cuts in into the calls to make: at MaxRequestBytes always, and
// into pieces of at most pipelineChunkRecords records that fit a
// shared-memory slot when the plugin maps records independently.
func (w *worker) chunks(in []engine.Record) [][]engine.Record {
	var chunks [][]engine.Record
	limit := pluginpb.MaxRequestBytes
	if w.perRecord && w.region != nil {
		// Chunks of large records still fit a shared-memory slot.
		limit = w.region.SlotBytes() - 2*binary.MaxVarintLen64
	}
	size, start := 0, 0
	for i := range in {
		rs := wire.RecordSize(&in[i])
		if i > start && (size+rs > limit || (w.perRecord && i-start >= pipelineChunkRecords)) {
			chunks = append(chunks, in[start:i])
			start, size = i, 0
		}
		size += rs
	}
	return append(chunks, in[start:])
}

type callResult struct {
	resp *pluginpb.ProcessResponse
	err  error // as returned by gRPC, classified by callFailed
}

var bufPool sync.Pool

// call makes one Process call; callID names it in the plugin's state
// reads (0 in a step without state). It may run concurrently with another
// call of the same worker (pipelining), so it touches no mutable worker
// state but the slot channel and the tainted flag.
func (w *worker) call(ctx context.Context, in []engine.Record, callID uint64) (*pluginpb.ProcessResponse, error) {
	if w.slots != nil && wire.Size(in) <= w.region.SlotBytes() {
		return w.callShared(ctx, in, callID)
	}
	bp, _ := bufPool.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	buf := wire.Append(slices.Grow((*bp)[:0], wire.Size(in)), in)
	cctx, cancel := context.WithTimeout(ctx, w.t.cfg.Timeout)
	resp, err := w.rpc.Process(cctx, &pluginpb.ProcessRequest{Records: buf, Call: callID})
	cancel()
	// Sent and answered: the buffer is free again. One huge record should
	// not pin its buffer forever.
	if cap(buf) <= pluginpb.MaxRequestBytes*2 {
		*bp = buf
		bufPool.Put(bp)
	}
	return resp, err
}

// callShared passes the batch and its answer through a shared-memory slot.
func (w *worker) callShared(ctx context.Context, in []engine.Record, callID uint64) (*pluginpb.ProcessResponse, error) {
	// There are as many slots as calls in flight, so this waits only after
	// a failure kept a slot, and then the batch's context is cancelled.
	var slot int
	select {
	case slot = <-w.slots:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	req := wire.Append(w.region.Request(slot), in) // fits: checked by the caller
	cctx, cancel := context.WithTimeout(ctx, w.t.cfg.Timeout)
	resp, err := w.rpc.Process(cctx, &pluginpb.ProcessRequest{Slot: uint32(slot), SlotLen: uint64(len(req)), Call: callID})
	cancel()
	if err != nil {
		if pluginReported(err) {
			w.slots <- slot // the plugin answered: it is done with the slot
		} else {
			// The plugin may still read or write the slot: never hand it
			// out again; the process is replaced before the next call.
			w.tainted.Store(true)
		}
		return nil, err
	}
	if n := resp.GetSlotLen(); n > 0 {
		if !w.region.Valid(slot, n) {
			w.slots <- slot
			return nil, status.Errorf(codes.InvalidArgument, "plugin %s answered in shared memory beyond its slot", w.launch.display)
		}
		// Outputs outlive the slot: one copy out, which they then alias.
		resp.Records = append([]byte(nil), w.region.Response(slot)[:n]...)
		resp.SlotLen = 0
	}
	w.slots <- slot
	return resp, nil
}

// pluginReported reports whether err is an answer of the plugin (it
// returned from Process) rather than a transport failure, a timeout or a
// cancellation.
func pluginReported(err error) bool {
	switch status.Code(err) {
	case codes.FailedPrecondition, codes.Aborted, codes.InvalidArgument, codes.ResourceExhausted:
		return true
	}
	return false
}

func (w *worker) decode(out []engine.Record, resp *pluginpb.ProcessResponse) ([]engine.Record, []engine.Rejected, error) {
	return w.decodeAppend(out, nil, resp)
}

// decodeAppend appends a response's records and rejects to out and rej.
func (w *worker) decodeAppend(out []engine.Record, rej []engine.Rejected, resp *pluginpb.ProcessResponse) ([]engine.Record, []engine.Rejected, error) {
	if len(resp.GetStateWrites()) > 0 && w.state == nil {
		return nil, nil, status.Errorf(codes.InvalidArgument, "plugin %s wrote state, but its step keeps none; add state: true to the step", w.launch.display)
	}
	out, err := wire.DecodeAppend(out, resp.GetRecords())
	if err != nil {
		return nil, nil, status.Errorf(codes.InvalidArgument, "plugin %s sent a bad response (built against another SDK version?): %v", w.launch.display, err)
	}
	if len(resp.GetReasons()) > 0 {
		recs, err := wire.Decode(resp.GetRejected())
		if err != nil || len(recs) != len(resp.GetReasons()) {
			return nil, nil, status.Errorf(codes.InvalidArgument, "plugin %s sent bad rejected records (built against another SDK version?)", w.launch.display)
		}
		for i := range recs {
			rej = append(rej, engine.Rejected{Record: recs[i], Reason: resp.Reasons[i], Plugin: w.t.name})
		}
	}
	return out, rej, nil
}

// callFailed classifies a failed Process call.
func (w *worker) callFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		// The engine gave up on the batch (shutdown); not the plugin's fault.
		return ctx.Err()
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.FailedPrecondition:
		return fmt.Errorf("transform %s failed the batch: %s", w.t.name, st.Message())
	case codes.ResourceExhausted, codes.InvalidArgument:
		return fmt.Errorf("transform %s: %s", w.t.name, st.Message())
	case codes.Aborted:
		// The plugin asked for a retry; its process is fine.
		return w.failed(fmt.Errorf("transform %s: %s", w.t.name, st.Message()))
	case codes.DeadlineExceeded:
		w.kill()
		return w.failed(fmt.Errorf("transform %s: no answer within its timeout of %s; raise timeout: if batches are legitimately slow", w.t.name, w.t.cfg.Timeout))
	default:
		w.kill() // waits for its stderr, which says why it died
		if w.outOfMemory() {
			return w.failed(w.memoryError())
		}
		if m := w.t.cfg.Memory; m > 0 {
			// A Go runtime whose allocation is refused inside its
			// collector may crash without saying why.
			return w.failed(fmt.Errorf("transform %s: plugin process failed: %s; it runs under memory: %s and may have run out of it (raise memory: to see)", w.t.name, st.Message(), pipelines.ByteSize(m)))
		}
		return w.failed(fmt.Errorf("transform %s: plugin process failed: %s", w.t.name, st.Message()))
	}
}

// outOfMemoryLines are what runtimes print when an allocation is refused:
// Go, C and C++, Python, the JVM.
var outOfMemoryLines = []string{"out of memory", "cannot allocate memory", "std::bad_alloc", "MemoryError", "OutOfMemoryError"}

// outOfMemory reports whether the plugin, run under a memory limit, died
// saying an allocation was refused. Called with mu held, after kill.
func (w *worker) outOfMemory() bool {
	if w.t.cfg.Memory <= 0 {
		return false
	}
	text := w.stderr.String()
	for _, s := range outOfMemoryLines {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}

func (w *worker) memoryError() error {
	return fmt.Errorf("transform %s: plugin %s ran out of memory: it needed more than its limit, memory: %s; raise memory: or send it smaller batches (batch.max-records-per-partition)",
		w.t.name, w.launch.display, pipelines.ByteSize(w.t.cfg.Memory))
}

// failed counts a failure: retryable with backoff until the limit, then
// final with the plugin's last stderr lines. Called with mu held.
func (w *worker) failed(err error) error {
	w.failures++
	if w.failures >= w.t.cfg.MaxFailures {
		w.kill()
		w.fatal = fmt.Errorf("%w (%d failures in a row, giving up); the plugin's last stderr lines:\n%s", err, w.failures, w.stderr)
		return w.fatal
	}
	wait := backoff.Policy{Min: restartBackoffMin, Max: restartBackoffMax}.Delay(w.failures)
	w.nextStart = time.Now().Add(wait)
	w.t.log.Warn("plugin call failed; the batch will be retried", "worker", w.index, "err", err, "retry_in", wait)
	return &engine.RetryableError{Err: err, After: wait}
}
