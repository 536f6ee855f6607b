package state

import (
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/engine"
)

// TestReadCacheBounded: whatever is put in, the cache stays within its
// budget, and what it still holds is what was last written.
func TestReadCacheBounded(t *testing.T) {
	const budget = 8 << 10
	const keys, writes = 700, 10_000
	c := newReadCache(budget)
	last := map[string]int{}
	for i := range writes {
		task := engine.Task(i % 3)
		k := fmt.Sprintf("k%d", i%keys)
		c.wrote(task, []write{{key: []byte(k), value: []byte(fmt.Sprint(i)), deleted: i%11 == 0}})
		last[fmt.Sprint(task, k)] = i
		if c.size() > budget {
			t.Fatalf("after %d writes the cache holds %d bytes, over its budget of %d", i+1, c.size(), budget)
		}
	}
	hits := 0
	for task := range engine.Task(3) {
		for n := range keys {
			k := fmt.Sprintf("k%d", n)
			e, hit, _ := c.lookup(task, []byte(k))
			if !hit {
				continue
			}
			hits++
			i := last[fmt.Sprint(task, k)]
			if e.ok != (i%11 != 0) || (e.ok && string(e.value) != fmt.Sprint(i)) {
				t.Fatalf("task %d key %s: cached %q (ok %v), last written %d", task, k, e.value, e.ok, i)
			}
		}
	}
	if hits == 0 {
		t.Fatal("the cache holds nothing after its last writes")
	}
	// A fill after a drop that it did not see is ignored.
	_, _, gen := c.lookup(7, []byte("x"))
	c.drop(7)
	c.fill(7, []byte("x"), []byte("stale"), true, gen)
	if _, hit, _ := c.lookup(7, []byte("x")); hit {
		t.Fatal("a read begun before a drop filled the cache after it")
	}
}
