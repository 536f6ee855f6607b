package daemon

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/pipelines"
	"github.com/sluicehq/sluice/state"
)

// A pipeline's state as the API reports it.
const (
	StateStarting = "starting"
	StateRunning  = "running"
	StatePaused   = "paused"
	StateFailed   = "failed" // stopped with an error; restarted after a backoff
	StateInvalid  = "invalid"
	StateStopped  = "stopped"
)

// managed is one pipeline under supervision: it is built and run, and run
// again after a failure, until stopped.
//
// The fields above mu are set by Daemon.manage before the daemon publishes
// m (under Daemon.mu) and never change after, so they are read without a
// lock. The fields below mu are written by supervise and the API while
// others read them: once m is published every access holds mu; holding
// Daemon.mu instead is not enough.
type managed struct {
	file  string
	name  string
	sum   [32]byte
	log   *slog.Logger
	build func(context.Context) (*engine.Pipeline, error) // nil: invalid
	spec  *pipelines.Spec                                 // nil: invalid
	// metrics are the counters the pipeline's records are counted in.
	metrics *engine.Metrics

	cancel context.CancelFunc
	done   chan struct{}
	resume chan struct{}

	mu       sync.Mutex
	state    string
	err      error
	restarts int
	started  time.Time
	p        *engine.Pipeline
	paused   bool
	runStop  context.CancelFunc // stops the current run (pause, restart)
	meter    *engine.Meter      // nil until sampled
}

// supervise runs the pipeline until ctx ends.
func (m *managed) supervise(ctx context.Context) {
	defer close(m.done)
	failures := 0 // in a row; a clean end of a run (pause, restart) resets it
	for ctx.Err() == nil {
		if m.isPaused() {
			m.set(StatePaused, nil)
			select {
			case <-ctx.Done():
				return
			case <-m.resume:
			}
			continue
		}
		m.set(StateStarting, nil)
		runCtx, stop := context.WithCancel(ctx)
		m.mu.Lock()
		m.runStop = stop
		m.mu.Unlock()
		p, err := m.build(runCtx)
		if err == nil {
			m.mu.Lock()
			m.p, m.started = p, time.Now()
			m.mu.Unlock()
			m.set(StateRunning, nil)
			err = p.Run(runCtx)
		} else if runCtx.Err() != nil && errors.Is(err, runCtx.Err()) {
			// Paused or restarted while waiting for the source: not a failure.
			err = nil
		}
		stop()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			// Paused or restarted through the API: go round at once.
			failures = 0
			continue
		}
		m.mu.Lock()
		m.restarts++
		m.mu.Unlock()
		m.set(StateFailed, err)
		failures++
		wait := restartBackoff.Delay(failures)
		m.log.Error("pipeline stopped; restarting after a pause", "pipeline", m.name, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-m.resume:
		}
	}
}

// valid reports whether the file parsed and its name was free. It is fixed
// when manage returns, so unlike state it needs no lock.
func (m *managed) valid() bool { return m.build != nil }

func (m *managed) set(state string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state, m.err = state, err
}

func (m *managed) isPaused() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.paused
}

// restartRun ends the current run (it drains and commits) so supervise
// starts it again, or parks it when paused.
func (m *managed) restartRun() {
	m.mu.Lock()
	stop := m.runStop
	m.mu.Unlock()
	if stop != nil {
		stop()
	}
	select {
	case m.resume <- struct{}{}:
	default:
	}
}

func (m *managed) pause() {
	m.mu.Lock()
	m.paused = true
	m.mu.Unlock()
	m.restartRun()
}

func (m *managed) unpause() {
	m.mu.Lock()
	m.paused = false
	m.mu.Unlock()
	select {
	case m.resume <- struct{}{}:
	default:
	}
}

// stop drains the pipeline and waits until it has stopped.
func (m *managed) stop() {
	if m.cancel != nil {
		m.cancel()
	}
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != StateInvalid {
		m.state, m.err = StateStopped, nil
	}
}

// Info is what the API reports for a pipeline.
type Info struct {
	Name       string           `json:"name"`
	File       string           `json:"file"`
	State      string           `json:"state"`
	Error      string           `json:"error,omitempty"`
	Retrying   string           `json:"retrying,omitempty"`
	Restarts   int              `json:"restarts"`
	Started    *time.Time       `json:"started,omitempty"`
	Epoch      uint64           `json:"epoch"`
	Positions  engine.Positions `json:"positions"`
	LastCommit *time.Time       `json:"last_commit,omitempty"`
	// Records counted since this process started, over every run of the
	// pipeline (the Prometheus counters' values).
	RecordsIn       uint64 `json:"records_in"`
	RecordsOut      uint64 `json:"records_out"`
	RecordsRejected uint64 `json:"records_rejected"`
	// InPerSec and OutPerSec are records per second read and written,
	// over the last few seconds (rateSamples).
	InPerSec  float64 `json:"in_per_sec"`
	OutPerSec float64 `json:"out_per_sec"`
	// Lag lists each partition the source knows the end of, with the
	// committed position and the records between them.
	Lag []PartitionLag `json:"lag,omitempty"`
	// Plugins lists the plugin steps and their processes' ids.
	Plugins []PluginInfo `json:"plugins,omitempty"`
	// Tasks lists the tasks this process runs, for a pipeline split into
	// tasks (empty if it runs none); absent otherwise.
	Tasks []TaskInfo `json:"tasks,omitzero"`
	// StateSize lists the size of each task's keyed state this process
	// holds, for a pipeline with stateful steps; absent otherwise.
	StateSize []StateInfo `json:"state_size,omitempty"`
	// Stages lists the stages after the first of a pipeline cut by
	// repartition steps (NAME.repartition-N, ARCHITECTURE §20), each read
	// from its internal topic; the fields above are then the first
	// stage's, which reads the source and writes the first internal topic.
	Stages []StageInfo `json:"stages,omitempty"`
}

// StateInfo is the size of one task's state (docs/ARCHITECTURE.md §18).
type StateInfo struct {
	Task  engine.Task `json:"task"`
	Keys  int64       `json:"keys"`
	Bytes int64       `json:"bytes"` // keys and values, as stored
}

// stateSizes is what a durable state backend (state.Durable) tells about
// its size.
type stateSizes interface {
	Sizes() map[engine.Task]state.Size
}

func stateInfos(b engine.StateBackend) []StateInfo {
	s, ok := b.(stateSizes)
	if !ok {
		return nil
	}
	sizes := s.Sizes()
	out := make([]StateInfo, 0, len(sizes))
	for _, t := range slices.Sorted(maps.Keys(sizes)) {
		out = append(out, StateInfo{Task: t, Keys: sizes[t].Keys, Bytes: sizes[t].Bytes})
	}
	return out
}

// StageInfo is one stage of a pipeline cut by repartition steps.
type StageInfo struct {
	Name       string           `json:"name"`
	Epoch      uint64           `json:"epoch"`
	Positions  engine.Positions `json:"positions"`
	LastCommit *time.Time       `json:"last_commit,omitempty"`
	Retrying   string           `json:"retrying,omitempty"`
	// Records counted since this process started, as for the pipeline.
	RecordsIn       uint64         `json:"records_in"`
	RecordsOut      uint64         `json:"records_out"`
	RecordsRejected uint64         `json:"records_rejected"`
	Lag             []PartitionLag `json:"lag,omitempty"`
	Tasks           []TaskInfo     `json:"tasks,omitzero"`
	Plugins         []PluginInfo   `json:"plugins,omitempty"`
	StateSize       []StateInfo    `json:"state_size,omitempty"`
}

// stageInfos describes the stages after p.
func (m *managed) stageInfos(p *engine.Pipeline) []StageInfo {
	var out []StageInfo
	for _, s := range p.Stages() {
		st := s.Status()
		si := StageInfo{Name: s.Name(), Epoch: st.Epoch, Positions: st.Positions, Lag: partitionLags(st), Tasks: taskInfos(st)}
		if si.Positions == nil {
			si.Positions = engine.Positions{}
		}
		if !st.LastCommit.IsZero() {
			si.LastCommit = &st.LastCommit
		}
		if st.Retrying != nil {
			si.Retrying = st.Retrying.Error()
		}
		if m.metrics != nil {
			t := m.metrics.Totals(s.Name())
			si.RecordsIn, si.RecordsOut, si.RecordsRejected = t.In, t.Out, t.Rejected
		}
		if m.state == StateRunning {
			si.Plugins = pluginInfos(s.Transforms())
		}
		si.StateSize = stateInfos(s.State())
		out = append(out, si)
	}
	return out
}

// TaskInfo is one task of a pipeline split into tasks: its committed
// checkpoint in the sink and how far it is behind its partitions' ends.
type TaskInfo struct {
	Task      engine.Task      `json:"task"`
	Epoch     uint64           `json:"epoch"`
	Positions engine.Positions `json:"positions"`
	// Lag is the records between the positions and the ends of the
	// task's partitions, summed; absent until every partition the source
	// reads for the task has a committed position and a known end.
	Lag *int64 `json:"lag,omitempty"`
}

// PartitionLag is how far a pipeline is behind one partition's end.
type PartitionLag struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Position is the committed position, absent before the first commit
	// that covers the partition; Lag is then absent too.
	Position *int64 `json:"position,omitempty"`
	End      int64  `json:"end"`
	Lag      *int64 `json:"lag,omitempty"`
}

// PluginInfo is one plugin step and its processes.
type PluginInfo struct {
	Name string `json:"name"`
	// PIDs has one entry per worker; 0 for a worker between restarts.
	PIDs []int `json:"pids"`
}

// processes is what a plugin step (plugins/host.Transform) tells about
// its processes.
type processes interface {
	Name() string
	PIDs() []int
}

// partitionLags lists, in partition order, each partition of ends with its
// committed position in at (split into tasks: the tasks' positions).
func partitionLags(st engine.Status) []PartitionLag {
	if len(st.Ends) == 0 {
		return nil
	}
	at := st.Positions
	for _, cp := range st.Tasks {
		at = at.Merge(cp.At)
	}
	out := make([]PartitionLag, 0, len(st.Ends))
	for _, tp := range st.Ends.Sorted() {
		pl := PartitionLag{Topic: tp.Topic, Partition: tp.Partition, End: st.Ends[tp]}
		if off, ok := at[tp]; ok {
			lag := max(pl.End-off, 0)
			pl.Position, pl.Lag = &off, &lag
		}
		out = append(out, pl)
	}
	return out
}

func pluginInfos(ts []engine.Transform) []PluginInfo {
	var out []PluginInfo
	for _, t := range ts {
		if p, ok := t.(processes); ok {
			out = append(out, PluginInfo{Name: p.Name(), PIDs: p.PIDs()})
		}
	}
	return out
}

// taskInfos lists st's tasks in order, nil if the pipeline is not split
// into tasks.
func taskInfos(st engine.Status) []TaskInfo {
	if st.Tasks == nil {
		return nil
	}
	out := make([]TaskInfo, 0, len(st.Tasks))
	for _, t := range slices.Sorted(maps.Keys(st.Tasks)) {
		cp := st.Tasks[t]
		ti := TaskInfo{Task: t, Epoch: cp.Epoch, Positions: cp.At}
		if ti.Positions == nil {
			ti.Positions = engine.Positions{}
		}
		ti.Lag = taskLag(t, cp.At, st.Ends)
		out = append(out, ti)
	}
	return out
}

// taskLag sums, over the partitions of task t the source reads, their end
// minus the committed position; nil if the source knows no end of the
// task's partitions or one of them has no committed position yet.
func taskLag(t engine.Task, at, ends engine.Positions) *int64 {
	var lag int64
	known := false
	for tp, end := range ends {
		if engine.TaskOf(tp) != t {
			continue
		}
		off, ok := at[tp]
		if !ok {
			return nil
		}
		lag += max(end-off, 0)
		known = true
	}
	if !known {
		return nil
	}
	return &lag
}

func (m *managed) info() Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := Info{Name: m.name, File: m.file, State: m.state, Restarts: m.restarts, Positions: engine.Positions{}}
	if m.err != nil {
		in.Error = m.err.Error()
	}
	if !m.started.IsZero() {
		t := m.started
		in.Started = &t
	}
	if m.p != nil {
		st := m.p.Status()
		in.Epoch = st.Epoch
		if st.Positions != nil {
			in.Positions = st.Positions
		}
		if !st.LastCommit.IsZero() {
			in.LastCommit = &st.LastCommit
		}
		if st.Retrying != nil {
			in.Retrying = st.Retrying.Error()
		}
		in.Tasks = taskInfos(st)
		in.Lag = partitionLags(st)
		in.StateSize = stateInfos(m.p.State())
		if m.state == StateRunning {
			in.Plugins = pluginInfos(m.p.Transforms())
		}
		in.Stages = m.stageInfos(m.p)
	}
	if m.metrics != nil {
		t := m.metrics.Totals(m.name)
		in.RecordsIn, in.RecordsOut, in.RecordsRejected = t.In, t.Out, t.Rejected
		if m.meter != nil {
			in.InPerSec, in.OutPerSec = m.meter.Rates()
		}
	}
	return in
}
