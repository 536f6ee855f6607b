package main

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "512": 512, "192MiB": 192 << 20, "1GiB": 1 << 30, "1.5GiB": 3 << 29,
		"64KiB": 64 << 10, "100MB": 100e6, " 2 GB ": 2e9, "7B": 7,
	} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1MiB", "12zz", "1e30GiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func TestMemoryLimitApply(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })

	var m memoryLimit
	if got := m.apply(); got != defaultMemoryLimit || debug.SetMemoryLimit(-1) != defaultMemoryLimit {
		t.Fatalf("default: applied %d, runtime has %d; want %d", got, debug.SetMemoryLimit(-1), defaultMemoryLimit)
	}
	if err := m.Set("512MiB"); err != nil {
		t.Fatal(err)
	}
	if got := m.apply(); got != 512<<20 || debug.SetMemoryLimit(-1) != 512<<20 {
		t.Fatalf("--memory-limit 512MiB: applied %d", got)
	}
	if err := m.Set("0"); err != nil {
		t.Fatal(err)
	}
	if got := m.apply(); got != 0 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("--memory-limit 0 must lift the limit: applied %d, runtime has %d", got, debug.SetMemoryLimit(-1))
	}
}
