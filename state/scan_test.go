package state

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/engine"
)

// TestScanAcrossChunks: a scan over more keys than one read transaction
// copies (scanChunk) merges the pending changes in order across the chunk
// boundaries, and stops when told.
func TestScanAcrossChunks(t *testing.T) {
	ctx := context.Background()
	d, err := Open(ctx, Options{DataDir: t.TempDir(), Pipeline: "p", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Restore(ctx, nil, func(engine.Task) uint64 { return 0 }); err != nil {
		t.Fatal(err)
	}
	const n = 3*scanChunk + 17
	key := func(i int) []byte { return fmt.Appendf(nil, "k%05d", i) }
	want := map[string]string{}
	bctx, b := d.Begin(ctx)
	v := ViewFrom(bctx)
	for i := range n {
		if err := v.Put(0, "w", key(i), []byte("committed")); err != nil {
			t.Fatal(err)
		}
		want[string(key(i))] = "committed"
	}
	if err := v.Put(0, "other", []byte("k00001"), []byte("not in w")); err != nil {
		t.Fatal(err)
	}
	if err := b.Prepare(ctx, func(engine.Task) uint64 { return 1 }); err != nil {
		t.Fatal(err)
	}
	b.Committed()

	// Pending: every 7th key deleted, every 5th changed, keys between
	// added, around the chunk boundaries too.
	bctx, _ = d.Begin(ctx)
	v = ViewFrom(bctx)
	for i := range n {
		switch {
		case i%7 == 0:
			v.Delete(0, "w", key(i))
			delete(want, string(key(i)))
		case i%5 == 0:
			v.Put(0, "w", key(i), []byte("pending"))
			want[string(key(i))] = "pending"
		}
		if i%scanChunk == scanChunk-1 || i%11 == 0 {
			k := append(key(i), '+')
			v.Put(0, "w", k, []byte("added"))
			want[string(k)] = "added"
		}
	}
	for _, r := range []struct{ from, to []byte }{{nil, nil}, {key(100), key(700)}, {key(scanChunk), nil}} {
		var keys []string
		for k := range want {
			if k >= string(r.from) && (r.to == nil || k < string(r.to)) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys) // byte order of the keys
		exp := make([]string, len(keys))
		for i, k := range keys {
			exp[i] = k + "=" + want[k]
		}
		var got []string
		if err := v.Scan(0, "w", r.from, r.to, func(k, val []byte) bool {
			got = append(got, string(k)+"="+string(val))
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, exp) {
			i := firstDiff(got, exp)
			t.Fatalf("Scan(%q, %q): %d entries, want %d; first difference at %d: %q vs %q", r.from, r.to, len(got), len(exp), i, got[max(0, i-2):i+3], exp[max(0, i-2):i+3])
		}
		// Stopping after 300 entries returns exactly those.
		got = got[:0]
		v.Scan(0, "w", r.from, r.to, func(k, val []byte) bool {
			got = append(got, string(k)+"="+string(val))
			return len(got) < 300
		})
		if !slices.Equal(got, exp[:min(300, len(exp))]) {
			t.Fatalf("Scan(%q, %q) stopped at 300: got %d entries, first difference at %d", r.from, r.to, len(got), firstDiff(got, exp))
		}
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
