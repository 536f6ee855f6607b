package main

import (
	"fmt"
	"strings"
	"testing"
)

// The issue 13 probes: each now fails lint with one line that says what to
// write, instead of passing lint (and failing, or allocating gigabytes, at
// run) or taking seconds and gigabytes to lint. The expansion stops at the
// reference that passes the cap (the 23rd of 32 KiB), which the line names.
func TestLintRefusesOversizedSettings(t *testing.T) {
	dir := t.TempDir()
	var refs strings.Builder
	for i := range 16_000 {
		fmt.Fprintf(&refs, "      k%d: ${BIG}\n", i)
	}
	t.Setenv("BIG", strings.Repeat("x", 32<<10))
	for _, tc := range []struct {
		name, file, want string
	}{
		{"expansion", "version: 1\nname: p\nsource: {generate: {}}\ndelivery: at-least-once\nsink: {stdout: {}}\ntransforms:\n  - plugin: uppercase\n    settings:\n" + refs.String(),
			":31:12: with its ${VAR} references expanded the file passes 1048576 bytes (1 MiB), the cap for a pipeline"},
		{"partitions", "version: 1\nname: p\nsource: {generate: {partitions: 2000000000}}\ndelivery: at-least-once\nsink: {stdout: {}}\n",
			":3:33: source.generate.partitions must be at most 10000, got 2000000000; write partitions: 10000 or less"},
		{"workers", "version: 1\nname: p\nsource: {generate: {}}\ndelivery: at-least-once\nsink: {stdout: {}}\ntransforms:\n  - {plugin: uppercase, workers: 9223372036854775807}\n",
			":7:34: transforms[0].workers must be at most 64, got 9223372036854775807; write workers: 64 or less"},
		{"memory", "version: 1\nname: p\nsource: {generate: {}}\ndelivery: at-least-once\nsink: {stdout: {}}\ntransforms:\n  - {plugin: uppercase, memory: 100TiB}\n",
			":7:33: transforms[0].memory must be at most 1TiB, got 100TiB; write memory: 1TiB or less"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeLintFile(t, dir, tc.name+".yaml", tc.file)
			out, err := runLint(t, "lint", path)
			var ec exitCode
			if !asExitCode(err, &ec) || ec != 1 {
				t.Fatalf("lint returned %v, want exitCode(1)\n%s", err, out)
			}
			if lines := strings.Split(strings.TrimRight(out, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], path+tc.want) {
				t.Errorf("lint said:\n%s\nwant one line starting %q", out, path+tc.want)
			}
		})
	}
}
