package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/plugins/internal/wire"
	pluginpb "github.com/sluicehq/sluice/plugins/proto"
	"github.com/sluicehq/sluice/state"
)

// Keyed state of a stateful step (Config.State; ARCHITECTURE §18, "Plugin
// state"). The plugin never touches the store: while a Process call runs,
// the host answers the plugin's reads (the State service, dialled over
// go-plugin's broker) from the batch's state.View, and the plugin sends its
// writes back with the answer, which the host checks and applies. So a
// write costs nothing until the answer, and a read one round trip, shared
// by many keys (the SDK's Prefetch).

// stateServer serves one worker's plugin process: the reads of the
// process's current Process call, against its batch's View.
type stateServer struct {
	pluginpb.UnimplementedStateServer
	t *Transform

	// mu is held by each request from start to end, so end waits for a
	// request in progress and no request reaches a View after its call.
	mu    sync.Mutex
	calls uint64 // the last call id handed out; ids start at 1
	call  uint64 // the call being served; 0 = none
	view  state.View
	tasks []engine.Task // of the call's records, sorted
	err   error         // the first failure of the View in this call
}

// serve starts serving the State service on a new broker stream of the
// plugin's connection and returns the stream's id, which Configure tells
// the plugin. The server ends with the plugin's connection.
func (s *stateServer) serve(b interface {
	NextId() uint32
	AcceptAndServe(uint32, func([]grpc.ServerOption) *grpc.Server)
}) uint32 {
	id := b.NextId()
	go b.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		srv := grpc.NewServer(append(opts, pluginpb.ServerOptions()...)...)
		pluginpb.RegisterStateServer(srv, s)
		return srv
	})
	return id
}

// begin opens the reads of one Process call on records of tasks.
func (s *stateServer) begin(view state.View, tasks []engine.Task) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.call, s.view, s.tasks, s.err = s.calls, view, tasks, nil
	return s.call
}

// end closes the call's reads and returns the View's first failure in it.
func (s *stateServer) end() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.err
	s.call, s.view, s.tasks, s.err = 0, nil, nil, nil
	return err
}

// open checks a request against the call being served; mu is held.
func (s *stateServer) open(call uint64, task int32) error {
	if call == 0 || call != s.call {
		// A request of a call the host gave up on (a timeout), or a
		// plugin that reads outside Process.
		return status.Errorf(codes.FailedPrecondition, "state read for call %d, which is not in progress; read state only during Process", call)
	}
	if _, ok := slices.BinarySearch(s.tasks, engine.Task(task)); !ok {
		return status.Errorf(codes.InvalidArgument, "state of task %d: not a task of this batch (its tasks are %v); use the Partition of one of the batch's records as the task", task, s.tasks)
	}
	return nil
}

// viewFailed keeps the View's failure for the host (it fails the batch
// with it, whatever the plugin makes of it) and tells the plugin.
func (s *stateServer) viewFailed(err error) error {
	if s.err == nil {
		s.err = err
	}
	return status.Errorf(codes.Unavailable, "the host could not read the state: %v", err)
}

// Get answers the values of keys, as many as fit StateReplyBytes (at
// least one): the SDK asks again for the rest.
func (s *stateServer) Get(_ context.Context, req *pluginpb.StateGetRequest) (*pluginpb.StateGetResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(req.GetCall(), req.GetTask()); err != nil {
		return nil, err
	}
	keys := req.GetKeys()
	if len(keys) == 0 || len(keys) > pluginpb.MaxStateGetKeys {
		return nil, status.Errorf(codes.InvalidArgument, "a state read of %d keys; read 1 to %d keys at a time", len(keys), pluginpb.MaxStateGetKeys)
	}
	task := engine.Task(req.GetTask())
	var body []byte
	n := 0
	s.t.stateMu.Lock()
	defer s.t.stateMu.Unlock()
	for _, k := range keys {
		var (
			v  []byte
			ok bool
		)
		if len(k) <= pluginpb.MaxStateKeyBytes { // a longer key cannot exist
			var err error
			if v, ok, err = s.view.Get(task, s.t.ns, k); err != nil {
				return nil, s.viewFailed(err)
			}
		}
		body = wire.AppendValue(body, v, ok) // copied: v is valid until the next View call
		n++
		if len(body) >= pluginpb.StateReplyBytes {
			break
		}
	}
	return &pluginpb.StateGetResponse{Values: append(wire.AppendValueCount(make([]byte, 0, len(body)+10), n), body...)}, nil
}

// Scan answers one page of the keys under a prefix, after req.After.
func (s *stateServer) Scan(_ context.Context, req *pluginpb.StateScanRequest) (*pluginpb.StateScanResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(req.GetCall(), req.GetTask()); err != nil {
		return nil, err
	}
	prefix, after := req.GetPrefix(), req.GetAfter()
	resp := &pluginpb.StateScanResponse{Entries: wire.AppendPairCount(nil, 0)}
	if len(prefix) > pluginpb.MaxStateKeyBytes {
		return resp, nil // no key that long can exist
	}
	from := prefix
	if req.GetHasAfter() {
		if !bytes.HasPrefix(after, prefix) {
			return nil, status.Errorf(codes.InvalidArgument, "scan resumes after a key outside its prefix")
		}
		from = after // and skips after itself below
	}
	var body []byte
	n := 0
	s.t.stateMu.Lock()
	defer s.t.stateMu.Unlock()
	err := s.view.Scan(engine.Task(req.GetTask()), s.t.ns, from, prefixEnd(prefix), func(k, v []byte) bool {
		if req.GetHasAfter() && bytes.Equal(k, after) {
			return true
		}
		if len(body) >= pluginpb.StateReplyBytes {
			resp.More = true
			return false
		}
		body = wire.AppendPair(body, k, v)
		n++
		return true
	})
	if err != nil {
		return nil, s.viewFailed(err)
	}
	resp.Entries = append(wire.AppendPairCount(make([]byte, 0, len(body)+10), n), body...)
	return resp, nil
}

// prefixEnd returns the first key after every key starting with prefix,
// nil if there is none (the prefix is empty or all 0xff bytes).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// tasksOf returns the tasks of in's records, sorted.
func tasksOf(in []engine.Record) []engine.Task {
	var tasks []engine.Task
	for i := range in {
		// Records of a partition mostly come together: skip the search.
		if t := engine.Task(in[i].Partition); (len(tasks) == 0 || tasks[len(tasks)-1] != t) && !slices.Contains(tasks, t) {
			tasks = append(tasks, t)
		}
	}
	slices.Sort(tasks)
	return tasks
}

// errBadWrites marks a plugin's answer whose state writes the host
// refuses: a bug in the plugin, so the batch fails without a retry.
var errBadWrites = errors.New("bad state writes")

// applyWrites checks a call's writes (every one for a task of the call,
// keys and values within the limits) and only then applies them all to
// the batch's View.
func (w *worker) applyWrites(buf []byte, tasks []engine.Task, view state.View) error {
	if len(buf) == 0 {
		return nil
	}
	name := w.t.name
	err := wire.DecodeWrites(buf, func(wr wire.Write) error {
		switch {
		case !slices.Contains(tasks, engine.Task(wr.Task)):
			return fmt.Errorf("%w: transform %s wrote the state of task %d, which is not a task of its batch (%v); a plugin writes only the tasks (partitions) of the records it was given", errBadWrites, name, wr.Task, tasks)
		case len(wr.Key) > pluginpb.MaxStateKeyBytes:
			return fmt.Errorf("%w: transform %s wrote a state key of %d bytes, over the limit of %d bytes; keep keys short", errBadWrites, name, len(wr.Key), pluginpb.MaxStateKeyBytes)
		case len(wr.Value) > pluginpb.MaxStateValueBytes:
			return fmt.Errorf("%w: transform %s wrote a state value of %d bytes for key %.40q, over the limit of %d bytes; split it over several keys", errBadWrites, name, len(wr.Value), wr.Key, pluginpb.MaxStateValueBytes)
		}
		return nil
	})
	if errors.Is(err, wire.ErrCorrupt) {
		return fmt.Errorf("%w: transform %s sent corrupt state writes (built against another SDK version?): %v", errBadWrites, name, err)
	}
	if err != nil {
		return err
	}
	w.t.stateMu.Lock()
	defer w.t.stateMu.Unlock()
	return wire.DecodeWrites(buf, func(wr wire.Write) error {
		var err error
		if wr.Delete {
			err = view.Delete(engine.Task(wr.Task), w.t.ns, wr.Key)
		} else {
			err = view.Put(engine.Task(wr.Task), w.t.ns, wr.Key, wr.Value)
		}
		if err != nil {
			return fmt.Errorf("transform %s: write state: %w", name, err)
		}
		return nil
	})
}

// processStateful runs a batch through a stateful step's plugin: its
// chunks one after the other (a chunk reads what the one before wrote),
// each call's writes applied before the next call.
func (w *worker) processStateful(ctx context.Context, in []engine.Record) ([]engine.Record, []engine.Rejected, error) {
	view := state.ViewFrom(ctx)
	if view == nil {
		return nil, nil, fmt.Errorf("transform %s keeps state (state: true), but the pipeline keeps none; run it with delivery: exactly-once", w.t.name)
	}
	var (
		out []engine.Record
		rej []engine.Rejected
	)
	for _, chunk := range w.chunks(in) {
		tasks := tasksOf(chunk)
		call := w.state.begin(view, tasks)
		resp, err := w.call(ctx, chunk, call)
		viewErr := w.state.end()
		if err != nil && (viewErr == nil || !pluginReported(err)) {
			return nil, nil, w.callFailed(ctx, err)
		}
		if viewErr != nil {
			// The store failed, not the plugin: the batch is retried as
			// the store's error says (engine.Retryable or not).
			return nil, nil, fmt.Errorf("transform %s: read state: %w", w.t.name, viewErr)
		}
		if err := w.applyWrites(resp.GetStateWrites(), tasks, view); err != nil {
			return nil, nil, err
		}
		if out, rej, err = w.decodeAppend(out, rej, resp); err != nil {
			return nil, nil, w.callFailed(ctx, err)
		}
	}
	w.failures = 0
	return out, rej, nil
}
