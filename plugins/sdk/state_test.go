package sdk

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/plugins/internal/wire"
)

// pagedState is memoryState answering like the host under pressure: Get
// one key at a time at most, Scan pages of `page` pairs, resuming after
// the last key.
type pagedState struct {
	memoryState
	page  int
	calls int
}

func (p *pagedState) get(ctx context.Context, task int32, keys []string) ([]wire.Value, error) {
	p.calls++
	return p.memoryState.get(ctx, task, keys[:1])
}

func (p *pagedState) scan(ctx context.Context, task int32, prefix, after string, hasAfter bool) ([]wire.Pair, bool, error) {
	p.calls++
	all, _, _ := p.memoryState.scan(ctx, task, prefix, "", false)
	i := 0
	if hasAfter {
		i, _ = slices.BinarySearchFunc(all, after, func(pr wire.Pair, k string) int { return strings.Compare(string(pr.Key), k) })
		if i < len(all) && string(all[i].Key) == after {
			i++
		}
	}
	end := min(i+p.page, len(all))
	return all[i:end], end < len(all), nil
}

// TestStoreMatchesModel runs random reads and writes through Stores over
// a paging backend, call after call, against a map: Get and Scan (prefix
// and order) must see the committed state with the call's own writes,
// and a Scan must not see the writes its own callback makes.
func TestStoreMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	backend := &pagedState{page: 2}
	model := map[string]string{}
	keys := []string{"a", "ab", "abc", "b", "ba", "c", "", "\xff", "\xff\xff"}
	for call := range 200 {
		backend.page = 1 + rng.IntN(3)
		s := newStore(context.Background(), backend, []Record{{Partition: 4}})
		want := maps.Clone(model)
		for range 10 {
			k := keys[rng.IntN(len(keys))]
			switch rng.IntN(5) {
			case 0:
				v := fmt.Sprint(rng.IntN(100))
				if err := s.Put(4, k, []byte(v)); err != nil {
					t.Fatal(err)
				}
				want[k] = v
			case 1:
				if err := s.Delete(4, k); err != nil {
					t.Fatal(err)
				}
				delete(want, k)
			case 2:
				v, ok, err := s.Get(4, k)
				if wv, wok := want[k]; err != nil || ok != wok || string(v) != wv {
					t.Fatalf("call %d: Get(%q) = %q %v %v, want %q %v", call, k, v, ok, err, wv, wok)
				}
			case 3:
				if err := s.Prefetch(4, keys...); err != nil {
					t.Fatal(err)
				}
			case 4:
				prefix := k[:rng.IntN(len(k)+1)]
				var got, exp []string
				for _, mk := range slices.Sorted(maps.Keys(want)) {
					if strings.HasPrefix(mk, prefix) {
						exp = append(exp, mk+"="+want[mk])
					}
				}
				stopAt := rng.IntN(len(exp) + 2)
				err := s.Scan(4, prefix, func(k string, v []byte) bool {
					got = append(got, k+"="+string(v))
					// Writes in the callback change the state, not this scan.
					_ = s.Put(4, "a", []byte("in-scan"))
					want["a"] = "in-scan"
					return len(got) < stopAt
				})
				if err != nil {
					t.Fatal(err)
				}
				if stopAt < len(exp) {
					exp = exp[:max(stopAt, 1)]
				}
				if len(exp) == 0 {
					got = exp // the callback never ran
				}
				if !slices.Equal(got, exp) {
					t.Fatalf("call %d: Scan(%q) = %q, want %q", call, prefix, got, exp)
				}
			}
		}
		if rng.IntN(4) == 0 {
			continue // a failed call: its writes are dropped
		}
		backend.apply(s)
		model = want
	}
}

func TestStoreRefusals(t *testing.T) {
	s := newStore(context.Background(), &memoryState{}, []Record{{Partition: 1}, {Partition: 3}})
	if _, _, err := s.Get(2, "k"); err == nil || !strings.Contains(err.Error(), "task 2: not a task of this batch (its tasks are [1 3])") {
		t.Fatalf("Get of another task: %v", err)
	}
	if err := s.Put(1, strings.Repeat("k", MaxStateKeyBytes+1), nil); err == nil || !strings.Contains(err.Error(), "over the limit of 4096 bytes") {
		t.Fatalf("Put of a long key: %v", err)
	}
	if !errors.Is(State(context.Background()).Put(0, "k", nil), ErrNoState) {
		t.Fatal("State outside a stateful call does not say ErrNoState")
	}
	// The first refusal sticks: it fails the batch even if dropped.
	if s.err == nil || !strings.Contains(s.err.Error(), "task 2") {
		t.Fatalf("sticky error = %v, want the first refusal", s.err)
	}
}
