package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

const (
	// memoryLimitFloor is the soft limit `sluice run` gives the Go runtime
	// when neither --memory-limit nor GOMEMLIMIT says otherwise. With the
	// default batch settings a pipeline into the file sink holds about 100
	// MiB live (two batches of 200,000 records and the fetched bytes they
	// point into); left alone, the collector lets the heap grow to twice
	// that between collections. Under this limit it collects earlier
	// instead, which keeps peak RSS under 256 MiB whatever the volume.
	memoryLimitFloor = 192 << 20
	// memoryHeadroom is how far above the live heap the automatic limit
	// stays when a pipeline holds more than the floor allows for (larger
	// batches, a sink that stages a copy): the collector then behaves as
	// with GOGC=50 instead of running without pause.
	memoryHeadroom = 1.5
	// memoryCheckEvery is how often the live heap is compared with the
	// limit.
	memoryCheckEvery = 250 * time.Millisecond
	// memoryTightShare is the share of a fixed limit the live heap may
	// take before sluice warns: past it the collector runs almost
	// constantly.
	memoryTightShare = 0.8
)

// memoryLimit is the --memory-limit flag: a size such as 192MiB or 1GiB,
// 0 for none; unset means automatic.
type memoryLimit struct {
	bytes int64
	set   bool
}

func (m *memoryLimit) String() string {
	if !m.set {
		return "auto"
	}
	return formatSize(m.bytes)
}

func (m *memoryLimit) Type() string { return "size" }

func (m *memoryLimit) Set(s string) error {
	if s == "auto" {
		*m = memoryLimit{}
		return nil
	}
	n, err := parseSize(s)
	if err != nil {
		return fmt.Errorf("%w; write a size such as 256MiB or 1GiB, 0 for no limit, or auto", err)
	}
	m.bytes, m.set = n, true
	return nil
}

// limitMode is how the process's soft memory limit is kept.
type limitMode int

const (
	limitNone  limitMode = iota // no limit
	limitFixed                  // --memory-limit SIZE or GOMEMLIMIT
	limitAuto                   // max(memoryLimitFloor, memoryHeadroom × live)
)

// apply sets the runtime's soft memory limit: the flag if given, else
// GOMEMLIMIT if set (the runtime already applied it), else the automatic
// limit starting at the floor. It returns the limit in force and how it
// is kept.
func (m *memoryLimit) apply() (int64, limitMode) {
	switch {
	case m.set && m.bytes == 0:
		debug.SetMemoryLimit(math.MaxInt64)
		return 0, limitNone
	case m.set:
		debug.SetMemoryLimit(m.bytes)
		return m.bytes, limitFixed
	case os.Getenv("GOMEMLIMIT") != "":
		if cur := debug.SetMemoryLimit(-1); cur != math.MaxInt64 {
			return cur, limitFixed
		}
		return 0, limitNone
	}
	debug.SetMemoryLimit(memoryLimitFloor)
	return memoryLimitFloor, limitAuto
}

// autoLimit is the automatic limit for a live heap of live bytes.
func autoLimit(live uint64) int64 {
	return max(memoryLimitFloor, int64(memoryHeadroom*float64(live)))
}

// watchMemory keeps the limit: the automatic one follows the live heap
// (never below the floor); a fixed one is left alone, with one warning
// when the live heap comes close to it, since the collector then runs
// almost constantly and the pipeline slows down.
func watchMemory(ctx context.Context, limit int64, mode limitMode) {
	if mode == limitNone {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(memoryCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		live := sample[0].Value.Uint64()
		if mode == limitAuto {
			if next := autoLimit(live); next != limit {
				debug.SetMemoryLimit(next)
				limit = next
			}
			continue
		}
		if float64(live) > memoryTightShare*float64(limit) {
			slog.Warn("the pipeline holds most of --memory-limit: the collector runs often and slows it down; raise --memory-limit or lower batch.max-records-per-partition",
				"live", formatSize(int64(live)), "memory_limit", formatSize(limit))
			return
		}
	}
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}

// parseSize reads a non-negative size with an optional unit (KiB, MiB,
// GiB, KB, MB, GB, B; none = bytes).
func parseSize(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 || n*float64(mult) > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q not understood", s)
	}
	return int64(n * float64(mult)), nil
}

func formatSize(n int64) string {
	switch {
	case n == 0:
		return "0"
	case n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%dMiB", n>>20)
	default:
		return fmt.Sprintf("%dB", n)
	}
}
