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
	if got, mode := m.apply(); got != memoryLimitFloor || mode != limitAuto || debug.SetMemoryLimit(-1) != memoryLimitFloor {
		t.Fatalf("default: applied %d (mode %d), runtime has %d; want the floor %d, auto", got, mode, debug.SetMemoryLimit(-1), memoryLimitFloor)
	}
	if err := m.Set("512MiB"); err != nil {
		t.Fatal(err)
	}
	if got, mode := m.apply(); got != 512<<20 || mode != limitFixed || debug.SetMemoryLimit(-1) != 512<<20 {
		t.Fatalf("--memory-limit 512MiB: applied %d (mode %d)", got, mode)
	}
	if err := m.Set("0"); err != nil {
		t.Fatal(err)
	}
	if got, mode := m.apply(); got != 0 || mode != limitNone || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("--memory-limit 0 must lift the limit: applied %d (mode %d), runtime has %d", got, mode, debug.SetMemoryLimit(-1))
	}
	if err := m.Set("auto"); err != nil || m.set {
		t.Fatalf("--memory-limit auto: %v", err)
	}
}

// The automatic limit never goes below the floor and keeps 1.5x the live
// heap above it, so a pipeline that holds more than the floor allows for
// is not starved by the collector.
func TestAutoLimit(t *testing.T) {
	for live, want := range map[uint64]int64{
		0: memoryLimitFloor, 100 << 20: memoryLimitFloor, 128 << 20: memoryLimitFloor,
		200 << 20: 300 << 20, 1 << 30: 3 << 29,
	} {
		if got := autoLimit(live); got != want {
			t.Errorf("autoLimit(%d MiB) = %d MiB, want %d MiB", live>>20, got>>20, want>>20)
		}
	}
}
