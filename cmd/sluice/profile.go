package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// Profiling hooks for measuring the binary users run (bench/ingest sets
// them): SLUICE_CPUPROFILE=FILE writes a CPU profile of the whole process,
// SLUICE_MEMPROFILE=FILE a heap profile taken at exit. Environment
// variables rather than flags, so every subcommand has them without a
// flag that users would mistake for a feature.
const (
	cpuProfileEnv = "SLUICE_CPUPROFILE"
	memProfileEnv = "SLUICE_MEMPROFILE"
)

// startProfiles starts what the environment asks for and returns the
// function that finishes it; call it before the process exits.
func startProfiles() (stop func(), err error) {
	var cpu *os.File
	if path := os.Getenv(cpuProfileEnv); path != "" {
		if cpu, err = os.Create(path); err != nil {
			return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
		}
		if err := pprof.StartCPUProfile(cpu); err != nil {
			cpu.Close()
			return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
		}
	}
	return func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
		}
		if path := os.Getenv(memProfileEnv); path != "" {
			if err := writeHeapProfile(path); err != nil {
				fmt.Fprintf(os.Stderr, "sluice: %s: %v\n", memProfileEnv, err)
			}
		}
	}, nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC() // up-to-date statistics of what is live
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
