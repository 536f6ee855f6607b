package aggregate

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/state"
)

// harness runs a step as the engine does with a state.Memory backend:
// each batch begun before the previous ones commit (run ahead), output
// kept only once its batch commits, and Discard + Restore dropping what
// did not.
type harness struct {
	t       *testing.T
	m       *state.Memory
	step    engine.Transform
	epoch   uint64 // the committed epoch
	pending []pendingBatch
	out     []engine.Record
	rej     []engine.Rejected
}

type pendingBatch struct {
	b   engine.StateBatch
	out []engine.Record
	rej []engine.Rejected
}

func newHarness(t *testing.T, step engine.Transform) *harness {
	return &harness{t: t, m: state.NewMemory(), step: step}
}

// run processes one batch without committing it.
func (h *harness) run(in []engine.Record) ([]engine.Record, []engine.Rejected) {
	h.t.Helper()
	ctx, b := h.m.Begin(context.Background())
	out, rej, err := h.step.Process(ctx, in)
	if err != nil {
		h.t.Fatalf("Process: %v", err)
	}
	h.pending = append(h.pending, pendingBatch{b, out, rej})
	return out, rej
}

// commit prepares and commits every pending batch, oldest first.
func (h *harness) commit() {
	h.t.Helper()
	for _, p := range h.pending {
		h.epoch++
		e := h.epoch
		if err := p.b.Prepare(context.Background(), func(engine.Task) uint64 { return e }); err != nil {
			h.t.Fatal(err)
		}
		p.b.Committed()
		h.out = append(h.out, p.out...)
		h.rej = append(h.rej, p.rej...)
	}
	h.pending = nil
}

// fail drops every batch not committed, as the engine does after a
// failure, and restores the committed state.
func (h *harness) fail() {
	h.t.Helper()
	h.m.Discard()
	h.pending = nil
	e := h.epoch
	if err := h.m.Restore(context.Background(), nil, func(engine.Task) uint64 { return e }); err != nil {
		h.t.Fatal(err)
	}
}

// result is one output record decoded.
type result struct {
	Key         string   `json:"key"`
	WindowStart string   `json:"window_start"`
	WindowEnd   string   `json:"window_end"`
	Count       *float64 `json:"count"`
	Total       *float64 `json:"total"`
	Low         *float64 `json:"low"`
	High        *float64 `json:"high"`
	Mean        *float64 `json:"mean"`
	Users       *float64 `json:"users"`
}

func decode(t *testing.T, r engine.Record) result {
	t.Helper()
	var res result
	if err := json.Unmarshal(r.Value, &res); err != nil {
		t.Fatalf("output %s is not JSON: %v", r.Value, err)
	}
	if string(r.Key) != res.Key {
		t.Fatalf("output record key %q, its JSON key %q", r.Key, res.Key)
	}
	return res
}
