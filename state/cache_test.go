package state

import (
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/engine"
)

// TestReadCacheBounded: whatever is put in, the cache's accounted size stays
// within its budget, and what it still holds is what was last written.
func TestReadCacheBounded(t *testing.T) {
	const budget = 4 << 10
	c := newReadCache(budget)
	for i := range 10_000 {
		task := engine.Task(i % 3)
		k := []byte(fmt.Sprintf("k%d", i%700))
		c.wrote(task, []write{{key: k, value: []byte(fmt.Sprint(i))}})
		if c.size > budget {
			t.Fatalf("after %d writes the cache holds %d bytes, over its budget of %d", i+1, c.size, budget)
		}
	}
	var sum int64
	held := 0
	for task, byKey := range c.m {
		for k, e := range byKey {
			sum += int64(len(k) + len(e.value) + cacheEntryOverhead)
			held++
			var n int
			fmt.Sscanf(k, "k%d", &n)
			// The last write of key n for this task was the largest i
			// below 10,000 with i%700 == n and i%3 == task.
			last := -1
			for i := n; i < 10_000; i += 700 {
				if engine.Task(i%3) == task {
					last = i
				}
			}
			if string(e.value) != fmt.Sprint(last) {
				t.Fatalf("task %d key %s: cached %q, last written %d", task, k, e.value, last)
			}
		}
	}
	if held == 0 || sum != c.size {
		t.Fatalf("cache holds %d entries of %d bytes, accounts %d", held, sum, c.size)
	}
	// A fill after a drop that it did not see is ignored.
	_, _, gen := c.lookup(7, []byte("x"))
	c.drop(7)
	c.fill(7, []byte("x"), []byte("stale"), true, gen)
	if _, hit, _ := c.lookup(7, []byte("x")); hit {
		t.Fatal("a read begun before a drop filled the cache after it")
	}
}
