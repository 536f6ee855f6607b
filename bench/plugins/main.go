// Command plugins measures a transform through one plugin subprocess
// against the same transform in-process: built-in plugins (uppercase, the
// cheapest possible transform, and by default also filter with an
// expression) on 100-byte records at batch sizes 1, 100 and 10,000, and
// prints one table of median records/s, the ratio, and CPU time per record
// (host plus plugin process), which is steadier than wall time on a shared
// machine.
//
//	go run ./bench/plugins [-runs R] [-time D] [-plugins uppercase,filter]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/plugins/builtin"
	"github.com/sluicehq/sluice/plugins/host"
	"github.com/sluicehq/sluice/plugins/sdk"
)

func main() {
	// The subprocess is this program re-executed in plugin mode.
	builtin.MaybeServe()
	runs := flag.Int("runs", 5, "runs per measurement; the table shows medians")
	per := flag.Duration("time", time.Second, "duration of one run")
	which := flag.String("plugins", "uppercase,filter", "built-in plugins to measure, comma-separated")
	flag.Parse()
	if err := run(*runs, *per, strings.Split(*which, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "bench/plugins:", err)
		os.Exit(1)
	}
}

type measurement struct {
	rate   float64 // records/s
	cpuRec float64 // CPU seconds per record, host plus plugin
}

// settings of the measured plugins: the filter keeps about half the
// records, so its output is half the size.
var settings = map[string]map[string]any{
	"filter": {"expr": `value matches "[05]$" || key endsWith "1"`},
}

func run(runs int, per time.Duration, plugins []string) error {
	ctx := context.Background()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "plugin\tbatch\tin-process rec/s\tsubprocess rec/s\tratio\tin-process CPU µs/rec\tsubprocess CPU µs/rec\tCPU ratio\t")
	for _, name := range plugins {
		for _, size := range []int{1, 100, 10000} {
			if err := row(ctx, tw, name, size, runs, per); err != nil {
				return err
			}
		}
	}
	tw.Flush()
	fmt.Printf("(%d runs of %s each, medians; ratio = subprocess/in-process throughput; CPU ratio = in-process/subprocess CPU per record)\n", runs, per)
	return nil
}

func row(ctx context.Context, tw io.Writer, name string, size, runs int, per time.Duration) error {
	batch := host.BenchBatch(size)
	p, ok := builtin.Lookup(name)
	if !ok {
		return fmt.Errorf("no built-in plugin %q", name)
	}
	local, err := sdk.Local(ctx, p, name, settings[name])
	if err != nil {
		return err
	}
	sub, err := host.New(ctx, host.Config{Pipeline: "bench", Plugin: name, Settings: settings[name],
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer sub.Close()
	var in, out []measurement
	for range runs {
		m, err := measure(ctx, local, batch, per, 0)
		if err != nil {
			return err
		}
		in = append(in, m)
		m, err = measure(ctx, sub, batch, per, sub.PIDs()[0])
		if err != nil {
			return err
		}
		out = append(out, m)
	}
	rate := func(m measurement) float64 { return m.rate }
	cpu := func(m measurement) float64 { return m.cpuRec }
	ri, ro := median(in, rate), median(out, rate)
	ci, co := median(in, cpu), median(out, cpu)
	fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.0f%%\t%.3f\t%.3f\t%.0f%%\t\n", name, size, ri, ro, 100*ro/ri, ci*1e6, co*1e6, 100*ci/co)
	return nil
}

// measure runs t over batch for about d and returns the rate and the CPU
// spent per record by this process and, if pid is set, the plugin process.
func measure(ctx context.Context, t engine.Transform, batch []engine.Record, d time.Duration, pid int) (measurement, error) {
	// Warm up: first calls pay for connection buffers and heap growth.
	for range 3 {
		if _, _, err := t.Process(ctx, batch); err != nil {
			return measurement{}, err
		}
	}
	cpu0 := selfCPU() + procCPU(pid)
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		if _, _, err := t.Process(ctx, batch); err != nil {
			return measurement{}, err
		}
		n += len(batch)
	}
	elapsed := time.Since(start)
	cpu := selfCPU() + procCPU(pid) - cpu0
	return measurement{rate: float64(n) / elapsed.Seconds(), cpuRec: cpu.Seconds() / float64(n)}, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU reads a running process's user+system time from /proc (Linux).
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	// After the command: state is field 3 (index 0 here); utime and stime
	// are fields 14 and 15, in clock ticks (100 per second on Linux).
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100)
}

func median(ms []measurement, f func(measurement) float64) float64 {
	v := make([]float64, len(ms))
	for i, m := range ms {
		v[i] = f(m)
	}
	slices.Sort(v)
	return v[len(v)/2]
}
