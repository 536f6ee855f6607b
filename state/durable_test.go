package state

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/internal/kafkatest"
)

// The property test of the durable backend (issue 16, item 7): a harness
// drives it as the engine does — batches begun ahead, prepared oldest first,
// committed by a simulated sink — with failures and crashes injected at
// every step, and checks every read against a model and, after every
// restore, that the state is exactly the model's at the committed epochs.

var namespaces = []string{"agg@transforms[0]", "dedupe@transforms[1]"}

// hbatch is a batch the harness began: its view and the model's copy of
// its changes (nil value: deleted).
type hbatch struct {
	ctx      context.Context
	b        engine.StateBatch
	changes  map[engine.Task]map[string]*string // "ns\x00key" -> value
	prepared bool
}

type harness struct {
	t    *testing.T
	rng  *rand.Rand
	log  *slog.Logger
	opts Options
	d    *Durable

	all   []engine.Task // every task of the pipeline
	tasks []engine.Task // tasks run (nil: one epoch chain)
	// The sink: the committed epoch of each task (one chain: chain).
	epochs map[engine.Task]uint64
	chain  uint64

	model   map[engine.Task]map[string]string // committed state
	pending []*hbatch
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newHarness(t *testing.T, seed uint64, opts Options, chain bool) *harness {
	h := &harness{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), log: quietLogger(), opts: opts,
		all: []engine.Task{0, 1, 2}, epochs: map[engine.Task]uint64{}, model: map[engine.Task]map[string]string{}}
	if !chain {
		h.tasks = h.all
	}
	for _, task := range h.all {
		h.model[task] = map[string]string{}
	}
	h.open()
	return h
}

func (h *harness) committed(task engine.Task) uint64 {
	if h.tasks == nil {
		return h.chain
	}
	return h.epochs[task]
}

func (h *harness) open() {
	h.t.Helper()
	d, err := Open(context.Background(), h.opts)
	if err != nil {
		h.t.Fatal(err)
	}
	h.d = d
	h.restore()
}

// restore is the engine's ActOpen: Discard, then Restore at the sink's
// epochs; the state must then be the model's.
func (h *harness) restore() {
	h.t.Helper()
	h.pending = nil
	h.d.Discard()
	if err := h.d.Restore(context.Background(), h.tasks, h.committed); err != nil {
		h.t.Fatalf("restore: %v", err)
	}
	h.checkAll()
}

// crash abandons the backend as a killed process would (buffered changelog
// records dropped, nothing flushed) and opens a new one.
func (h *harness) crash() {
	h.t.Helper()
	if h.d.cl != nil {
		h.d.cl.close()
	}
	for _, s := range h.d.stores {
		s.close()
	}
	h.open()
}

// expected returns what batch i's view must read: the committed state with
// the changes of pending batches 0..i.
func (h *harness) expected(i int, task engine.Task) map[string]string {
	m := maps.Clone(h.model[task])
	for _, b := range h.pending[:i+1] {
		for k, v := range b.changes[task] {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = *v
			}
		}
	}
	return m
}

func (h *harness) begin() {
	ctx, b := h.d.Begin(context.Background())
	hb := &hbatch{ctx: ctx, b: b, changes: map[engine.Task]map[string]*string{}}
	h.pending = append(h.pending, hb)
	i := len(h.pending) - 1
	v := ViewFrom(ctx)
	for range h.rng.IntN(6) {
		task := h.all[h.rng.IntN(len(h.all))]
		ns := namespaces[h.rng.IntN(len(namespaces))]
		key := fmt.Sprintf("k%d", h.rng.IntN(8))
		if hb.changes[task] == nil {
			hb.changes[task] = map[string]*string{}
		}
		if h.rng.IntN(10) < 7 {
			val := fmt.Sprintf("v%d", h.rng.IntN(1000))
			if h.rng.IntN(10) == 0 {
				val = ""
			}
			if err := v.Put(task, ns, []byte(key), []byte(val)); err != nil {
				h.t.Fatal(err)
			}
			hb.changes[task][ns+"\x00"+key] = &val
		} else {
			if err := v.Delete(task, ns, []byte(key)); err != nil {
				h.t.Fatal(err)
			}
			hb.changes[task][ns+"\x00"+key] = nil
		}
		// Reads see the committed state, the pending batches and this one.
		task = h.all[h.rng.IntN(len(h.all))]
		ns = namespaces[h.rng.IntN(len(namespaces))]
		key = fmt.Sprintf("k%d", h.rng.IntN(8))
		want, wantOK := h.expected(i, task)[ns+"\x00"+key]
		got, ok, err := v.Get(task, ns, []byte(key))
		if err != nil || ok != wantOK || string(got) != want {
			h.t.Fatalf("Get(%d, %s, %s) = %q %v %v; want %q %v", task, ns, key, got, ok, err, want, wantOK)
		}
		h.checkScan(v, i, task, ns)
	}
}

// checkScan compares a scan of a random range with the model.
func (h *harness) checkScan(v View, i int, task engine.Task, ns string) {
	h.t.Helper()
	var from, to []byte
	if h.rng.IntN(2) == 0 {
		from = fmt.Appendf(nil, "k%d", h.rng.IntN(8))
	}
	if h.rng.IntN(2) == 0 {
		to = fmt.Appendf(nil, "k%d", h.rng.IntN(9))
	}
	limit := 1 + h.rng.IntN(9)
	var want []string
	for k, val := range h.expected(i, task) {
		nsk, key, _ := cut(k)
		if nsk == ns && key >= string(from) && (to == nil || key < string(to)) {
			want = append(want, key+"="+val)
		}
	}
	slices.Sort(want)
	want = want[:min(len(want), limit)]
	var got []string
	err := v.Scan(task, ns, from, to, func(k, val []byte) bool {
		got = append(got, string(k)+"="+string(val))
		return len(got) < limit
	})
	if err != nil || !slices.Equal(got, want) {
		h.t.Fatalf("Scan(%d, %s, %q, %q) = %q %v; want %q", task, ns, from, to, got, err, want)
	}
}

func cut(k string) (ns, key string, ok bool) {
	for i := range len(k) {
		if k[i] == 0 {
			return k[:i], k[i+1:], true
		}
	}
	return "", k, false
}

// checkAll reads every task's whole state through a fresh view and
// compares it with the model at the committed epochs.
func (h *harness) checkAll() {
	h.t.Helper()
	ctx, _ := h.d.Begin(context.Background())
	v := ViewFrom(ctx)
	sizes := h.d.Sizes()
	for _, task := range h.all {
		got := map[string]string{}
		for _, ns := range namespaces {
			if err := v.Scan(task, ns, nil, nil, func(k, val []byte) bool {
				got[ns+"\x00"+string(k)] = string(val)
				return true
			}); err != nil {
				h.t.Fatal(err)
			}
		}
		if !maps.Equal(got, h.model[task]) {
			h.t.Fatalf("task %d after restore at epoch %d:\n got %q\nwant %q", task, h.committed(task), got, h.model[task])
		}
		if n := sizes[task].Keys; n != int64(len(got)) && (n != 0 || len(got) != 0) {
			h.t.Fatalf("task %d: Sizes says %d keys, the state has %d", task, n, len(got))
		}
	}
	h.d.Discard()
}

// commitOldest runs the oldest pending batch through Prepare and the sink's
// commit, with a failure or crash injected at random on the way.
func (h *harness) commitOldest() {
	h.t.Helper()
	hb := h.pending[0]
	epoch := func(task engine.Task) uint64 { return h.committed(task) + 1 }
	switch h.rng.IntN(12) {
	case 0: // crash between the changelog's flush and the local writes
		testHookAfterChangelog = func() error { return errors.New("crash") }
		err := hb.b.Prepare(context.Background(), epoch)
		testHookAfterChangelog = nil
		if err == nil {
			h.t.Fatal("Prepare ignored the crash hook")
		}
		h.crash()
		return
	case 1: // prepare fails (changelog unreachable): the engine starts over
		testHookAfterChangelog = func() error { return errors.New("failed") }
		hb.b.Prepare(context.Background(), epoch)
		testHookAfterChangelog = nil
		h.restore()
		return
	}
	if err := hb.b.Prepare(context.Background(), epoch); err != nil {
		h.t.Fatalf("prepare: %v", err)
	}
	switch h.rng.IntN(8) {
	case 0: // crash between Prepare and the sink's commit
		h.crash()
		return
	case 1: // the sink's commit fails: the engine starts over
		h.restore()
		return
	}
	// The sink commits.
	if h.tasks == nil {
		h.chain++
	} else {
		for _, task := range h.tasks {
			h.epochs[task]++
		}
	}
	for task, ch := range hb.changes {
		for k, v := range ch {
			if v == nil {
				delete(h.model[task], k)
			} else {
				h.model[task][k] = *v
			}
		}
	}
	h.pending = h.pending[1:]
	switch h.rng.IntN(8) {
	case 0: // crash before the engine calls Committed
		h.crash()
		return
	case 1: // the commit's acknowledgement is lost: the engine starts over
		h.restore()
		return
	}
	hb.b.Committed()
}

func (h *harness) run(steps int) {
	for range steps {
		switch r := h.rng.IntN(20); {
		case r < 9 && len(h.pending) < 2:
			h.begin()
		case r < 18 && len(h.pending) > 0:
			h.commitOldest()
		case r == 18:
			h.crash()
		case r == 19:
			h.restore()
		}
	}
	h.d.Close()
	// A clean stop and a start: the state is the model's.
	h.open()
	h.d.Close()
}

func TestDurablePropertyLocal(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			h := newHarness(t, seed, Options{DataDir: t.TempDir(), Pipeline: "p", Logger: quietLogger()}, seed%2 == 0)
			h.run(400)
		})
	}
}

func TestDurablePropertyChangelog(t *testing.T) {
	brokers := kafkatest.Builtin(t, "unused", 1)
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			opts := Options{DataDir: t.TempDir(), Pipeline: fmt.Sprintf("p%d", seed), Logger: quietLogger(),
				Kafka: []kgo.Opt{kgo.SeedBrokers(brokers...)}}
			h := newHarness(t, seed, opts, seed%2 == 0)
			h.run(300)
			// The local stores lost: everything comes back from the
			// changelog alone.
			opts.DataDir = t.TempDir()
			h.opts = opts
			h.open()
			h.d.Close()
		})
	}
}
