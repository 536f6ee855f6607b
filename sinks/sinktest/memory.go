package sinktest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sinks"
	"github.com/sluicehq/sluice/sinks/internal/commit"
)

// Memory is a destination held in memory, shared by the sinks NewSink
// returns the way a directory or a table is shared by sink instances. Its
// sinks stage, commit and fence by the same rules as the file, postgres and
// kafka sinks (package sinks/internal/commit), so the suite is checked
// against it (TestMemory), and tests of code above the sinks can run a
// pipeline into it. It is safe for concurrent use.
type Memory struct {
	mu        sync.Mutex
	pipelines map[string]*memCommitted
}

// memCommitted is what one pipeline has committed.
type memCommitted struct {
	epoch  uint64
	at     engine.Positions
	tasks  map[engine.Task]engine.Checkpoint // of a pipeline split into tasks
	output []engine.Record
	dead   []engine.Record
}

// NewMemory returns an empty destination.
func NewMemory() *Memory { return &Memory{pipelines: map[string]*memCommitted{}} }

// entryLocked returns what pipeline has committed, made empty if nothing;
// m.mu is held.
func (m *Memory) entryLocked(pipeline string) *memCommitted {
	c := m.pipelines[pipeline]
	if c == nil {
		c = &memCommitted{}
		m.pipelines[pipeline] = c
	}
	return c
}

// NewSink returns a new, unopened sink instance writing to m.
func (m *Memory) NewSink() *MemorySink {
	return &MemorySink{m: m, staged: commit.Staged{Sink: "memory sink"}}
}

// Records returns the committed records of pipeline, in commit order.
func (m *Memory) Records(pipeline string) []engine.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.pipelines[pipeline]; c != nil {
		return slices.Clone(c.output)
	}
	return nil
}

// Committed returns the last committed epoch of pipeline and its positions.
func (m *Memory) Committed(pipeline string) (uint64, engine.Positions) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.pipelines[pipeline]; c != nil {
		return c.epoch, c.at.Clone()
	}
	return 0, nil
}

// values lists the values of every pipeline's committed records (dead
// letters with dead), for the suite's Harness.
func (m *Memory) values(dead bool) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, c := range m.pipelines {
		recs := c.output
		if dead {
			recs = c.dead
		}
		for _, r := range recs {
			out = append(out, string(r.Value))
		}
	}
	return out
}

// MemorySink is one instance writing to a Memory. Like the other sinks it
// is used by one goroutine at a time.
type MemorySink struct {
	m        *Memory
	pipeline string
	known    uint64 // the epoch this instance last saw stored
	staged   commit.Staged
	fence    commit.Fence
	output   []engine.Record
	dead     []engine.Record
}

// Open returns what pipeline has committed and drops anything staged.
func (s *MemorySink) Open(ctx context.Context, pipeline string) (uint64, engine.Positions, error) {
	s.drop()
	s.pipeline = pipeline
	s.fence = commit.Fence{Sink: "memory sink", Pipeline: pipeline, Where: "memory",
		Advice: "open one instance of a pipeline at a time"}
	epoch, at := s.m.Committed(pipeline)
	s.known = epoch
	return epoch, at, nil
}

// Write stages copies of records for epoch.
func (s *MemorySink) Write(ctx context.Context, epoch uint64, records []engine.Record) error {
	if err := s.begin(epoch); err != nil {
		return err
	}
	for _, r := range records {
		s.output = append(s.output, clone(r))
	}
	return nil
}

// WriteRejected stages dead letters for epoch; they commit with its
// output. It implements engine.DeadLetterSink.
func (s *MemorySink) WriteRejected(ctx context.Context, epoch uint64, rejected []engine.Rejected) error {
	if err := s.begin(epoch); err != nil {
		return err
	}
	for _, r := range rejected {
		s.dead = append(s.dead, clone(sinks.DeadLetter(r)))
	}
	return nil
}

func (s *MemorySink) begin(epoch uint64) error {
	if s.pipeline == "" {
		return errors.New("memory sink: Write before Open")
	}
	if err := s.staged.CheckWrite(epoch); err != nil {
		return err
	}
	s.staged.Epoch = epoch
	return nil
}

// Commit makes the staged epoch visible with until, on top of epoch-1.
func (s *MemorySink) Commit(ctx context.Context, epoch uint64, until engine.Positions) error {
	if s.pipeline == "" {
		return errors.New("memory sink: Commit before Open")
	}
	if err := s.staged.CheckCommit(epoch); err != nil {
		return err
	}
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	c := s.m.entryLocked(s.pipeline)
	switch commit.Check(epoch, until, c.epoch, c.at) {
	case commit.Done:
		s.known = epoch
		s.drop()
		return nil
	case commit.Fenced:
		return s.fence.Error(epoch, fmt.Sprintf("memory holds epoch %d", c.epoch))
	}
	if c.epoch != s.known {
		return s.fence.Error(epoch, fmt.Sprintf("memory holds epoch %d, committed by another instance after this one opened", c.epoch))
	}
	c.epoch, c.at = epoch, until.Clone()
	c.output = append(c.output, s.output...)
	c.dead = append(c.dead, s.dead...)
	s.known = epoch
	s.drop()
	return nil
}

// Abort drops what is staged.
func (s *MemorySink) Abort(ctx context.Context, epoch uint64) error {
	s.drop()
	return nil
}

// Close drops what is staged.
func (s *MemorySink) Close() error {
	s.drop()
	return nil
}

func (s *MemorySink) drop() {
	s.staged.Epoch, s.output, s.dead = 0, nil, nil
}

// clone copies r's bytes: the caller may reuse them after Write returns.
func clone(r engine.Record) engine.Record {
	r.Key, r.Value = slices.Clone(r.Key), slices.Clone(r.Value)
	hs := make([]engine.Header, len(r.Headers))
	for i, h := range r.Headers {
		hs[i] = engine.Header{Key: h.Key, Value: slices.Clone(h.Value)}
	}
	r.Headers = hs
	return r
}
