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
	// defaultMemoryLimit is the soft limit `sluice run` gives the Go
	// runtime when neither --memory-limit nor GOMEMLIMIT says otherwise.
	// With the default batch settings a pipeline holds about 100 MiB live
	// (two batches of 200,000 records and the fetched bytes they point
	// into); left alone, the collector lets the heap grow to twice that
	// between collections. Below this limit it collects earlier instead,
	// which keeps peak RSS under 256 MiB whatever the volume.
	defaultMemoryLimit = 192 << 20
	// memoryCheckEvery is how often the live heap is compared with the
	// limit, to say when the limit, not the pipeline, sets the pace.
	memoryCheckEvery = 5 * time.Second
	// memoryTightShare is the share of the limit the live heap may take
	// before sluice warns: past it the collector runs almost constantly.
	memoryTightShare = 0.8
)

// memoryLimit is the --memory-limit flag: a size such as 192MiB or 1GiB,
// 0 for none.
type memoryLimit struct {
	bytes int64
	set   bool
}

func (m *memoryLimit) String() string {
	if !m.set {
		return "192MiB"
	}
	return formatSize(m.bytes)
}

func (m *memoryLimit) Type() string { return "size" }

func (m *memoryLimit) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return fmt.Errorf("%w; write a size such as 256MiB or 1GiB, or 0 for no limit", err)
	}
	m.bytes, m.set = n, true
	return nil
}

// apply sets the runtime's soft memory limit: the flag if given, else
// GOMEMLIMIT if set (the runtime already applied it), else the default.
// It returns the limit in force, 0 for none.
func (m *memoryLimit) apply() int64 {
	limit := int64(defaultMemoryLimit)
	switch {
	case m.set:
		limit = m.bytes
	case os.Getenv("GOMEMLIMIT") != "":
		if cur := debug.SetMemoryLimit(-1); cur != math.MaxInt64 {
			return cur
		}
		return 0
	}
	if limit == 0 {
		debug.SetMemoryLimit(math.MaxInt64)
		return 0
	}
	debug.SetMemoryLimit(limit)
	return limit
}

// watchMemory warns once when the live heap comes close to limit: the
// collector then runs almost constantly and the pipeline slows down.
func watchMemory(ctx context.Context, limit int64) {
	if limit <= 0 {
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
		if live := sample[0].Value.Uint64(); float64(live) > memoryTightShare*float64(limit) {
			slog.Warn("the pipeline holds most of --memory-limit: the collector runs often and slows it down; raise --memory-limit or lower batch.max-records-per-partition",
				"live", formatSize(int64(live)), "memory-limit", formatSize(limit))
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
