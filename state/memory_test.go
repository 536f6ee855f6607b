package state_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/state"
)

var ctx = context.Background()

func begin(t *testing.T, m *state.Memory) (state.View, engine.StateBatch) {
	t.Helper()
	c, b := m.Begin(ctx)
	v := state.ViewFrom(c)
	if v == nil {
		t.Fatal("Begin's context carries no View")
	}
	return v, b
}

func get(t *testing.T, v state.View, key string) string {
	t.Helper()
	val, ok, err := v.Get(0, "ns", []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return "<none>"
	}
	return string(val)
}

func epochOf(e uint64) func(engine.Task) uint64 { return func(engine.Task) uint64 { return e } }

func TestPendingBatchesSeeEachOther(t *testing.T) {
	m := state.NewMemory()
	v1, b1 := begin(t, m)
	v1.Put(0, "ns", []byte("a"), []byte("1"))
	v2, b2 := begin(t, m)
	if got := get(t, v2, "a"); got != "1" {
		t.Fatalf("a batch does not see the one begun before it: a = %s", got)
	}
	v2.Put(0, "ns", []byte("a"), []byte("2"))
	if got := get(t, v1, "a"); got != "1" {
		t.Fatalf("a batch sees the one begun after it: a = %s", got)
	}
	b1.Prepare(ctx, epochOf(1))
	b1.Committed()
	if got := get(t, v2, "a"); got != "2" {
		t.Fatalf("after the batch before it committed, a = %s, want its own 2", got)
	}
	m.Discard() // b2 fails
	if _, _, err := v2.Get(0, "ns", []byte("a")); err == nil {
		t.Fatal("the View of a discarded batch still answers")
	}
	if b2.Empty() {
		t.Fatal("a batch that put a key says it is empty")
	}
	if err := m.Restore(ctx, nil, epochOf(1)); err != nil {
		t.Fatal(err)
	}
	v3, _ := begin(t, m)
	if got := get(t, v3, "a"); got != "1" {
		t.Fatalf("after a discard a = %s, want the committed 1", got)
	}
}

// A batch prepared whose commit outcome was lost: Restore keeps it if the
// sink committed its epoch and drops it otherwise.
func TestRestoreDecidesAPreparedBatch(t *testing.T) {
	for _, committed := range []bool{true, false} {
		t.Run(fmt.Sprint("committed=", committed), func(t *testing.T) {
			m := state.NewMemory()
			v, b := begin(t, m)
			v.Put(0, "ns", []byte("k"), []byte("v"))
			v.Put(1, "ns", []byte("k"), []byte("w"))
			if err := b.Prepare(ctx, func(t engine.Task) uint64 { return 5 + uint64(t) }); err != nil {
				t.Fatal(err)
			}
			m.Discard()
			// Task 0's epoch 5 committed; task 1's 6 only if committed.
			sink := func(t engine.Task) uint64 {
				if t == 1 && !committed {
					return 5
				}
				return 5 + uint64(t)
			}
			if err := m.Restore(ctx, []engine.Task{0, 1}, sink); err != nil {
				t.Fatal(err)
			}
			if got := m.Snapshot(0)["ns"]["k"]; got != "v" {
				t.Errorf("task 0 (committed) holds %q, want v", got)
			}
			got, want := m.Snapshot(1)["ns"]["k"], ""
			if committed {
				want = "w"
			}
			if got != want {
				t.Errorf("task 1 holds %q, want %q", got, want)
			}
			// The sink moved back behind the state: refused.
			if err := m.Restore(ctx, nil, epochOf(1)); err == nil {
				t.Error("Restore to an epoch behind the committed state was accepted")
			}
		})
	}
}

// Scan merges the committed state with the pending batches' puts and
// deletes, in key order within [from, to); checked against a model.
func TestScanMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	m := state.NewMemory()
	model := map[string]string{} // what the newest batch sees
	var views []state.View
	var batches []engine.StateBatch
	epoch := uint64(0)
	key := func() string { return fmt.Sprintf("k%02d", rng.IntN(40)) }
	for step := range 3000 {
		switch r := rng.IntN(10); {
		case r < 1 || len(views) == 0:
			v, b := begin(t, m)
			views, batches = append(views, v), append(batches, b)
		case r < 2 && len(batches) > 1:
			epoch++
			batches[0].Prepare(ctx, epochOf(epoch))
			batches[0].Committed()
			views, batches = views[1:], batches[1:]
		case r < 6:
			k, val := key(), fmt.Sprint(step)
			views[len(views)-1].Put(0, "ns", []byte(k), []byte(val))
			model[k] = val
		case r < 8:
			k := key()
			views[len(views)-1].Delete(0, "ns", []byte(k))
			delete(model, k)
		default:
			from, to := key(), key()
			if to < from {
				from, to = to, from
			}
			var want, got []string
			for k, v := range model {
				if k >= from && k < to {
					want = append(want, k+"="+v)
				}
			}
			slices.Sort(want)
			views[len(views)-1].Scan(0, "ns", []byte(from), []byte(to), func(k, v []byte) bool {
				got = append(got, string(k)+"="+string(v))
				return true
			})
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: scan [%s, %s) = %s, want %s", step, from, to, strings.Join(got, " "), strings.Join(want, " "))
			}
		}
	}
}

func TestLimits(t *testing.T) {
	m := state.NewMemory()
	v, _ := begin(t, m)
	if err := v.Put(0, "ns", make([]byte, state.MaxKeyBytes+1), nil); err == nil {
		t.Error("a key over MaxKeyBytes was accepted")
	}
	if err := v.Put(0, "ns", []byte("k"), make([]byte, state.MaxValueBytes+1)); err == nil {
		t.Error("a value over MaxValueBytes was accepted")
	}
	if err := v.Put(0, "", []byte("k"), nil); err == nil {
		t.Error("an empty namespace was accepted")
	}
}
