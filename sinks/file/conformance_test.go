package file

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sinks/sinktest"
)

// TestConformance runs the suite with one part file per epoch, where
// committed output is visible at once, and with the default roll, where
// the suite reads what is committed: the visible part files and the
// committed bytes of the open one (committedValues). Either way every
// committed record is there exactly once.
func TestConformance(t *testing.T) {
	for _, mode := range []struct {
		name string
		roll *RollConfig
		read func(t *testing.T, dir, format string) []string
	}{
		{"per-epoch", &RollConfig{PerEpoch: true}, visibleValuesOf},
		{"default roll", nil, committedValues},
	} {
		for _, format := range []string{"jsonl", "raw"} {
			t.Run(mode.name+"/"+format, func(t *testing.T) {
				conformance(t, format, mode.roll, mode.read)
			})
		}
	}
}

func visibleValuesOf(t *testing.T, dir, format string) []string {
	t.Helper()
	var out []string
	for _, name := range visible(t, dir) {
		out = append(out, readValues(t, filepath.Join(dir, name), format)...)
	}
	return out
}

// TestTaskConformance runs the suite for a pipeline split into tasks on
// the same harness. Task mode makes every round its own part file whatever
// the roll; the roll still governs the single-chain epochs a task starts
// from, whose open part file the first OpenTasks rolls.
func TestTaskConformance(t *testing.T) {
	for _, mode := range []struct {
		name string
		roll *RollConfig
	}{
		{"per-epoch", &RollConfig{PerEpoch: true}},
		{"default roll", nil},
	} {
		for _, format := range []string{"jsonl", "raw"} {
			t.Run(mode.name+"/"+format, func(t *testing.T) {
				sinktest.RunTasks(t, func(t *testing.T) sinktest.Harness {
					return harness(t.TempDir(), format, mode.roll, committedValues)
				})
			})
		}
	}
}

func conformance(t *testing.T, format string, roll *RollConfig, read func(t *testing.T, dir, format string) []string) {
	sinktest.Run(t, func(t *testing.T) sinktest.Harness {
		return harness(t.TempDir(), format, roll, read)
	})
}

// harness is the suite's view of a directory shared by the sinks it makes.
func harness(dir, format string, roll *RollConfig, read func(t *testing.T, dir, format string) []string) sinktest.Harness {
	return sinktest.Harness{
		New: func(t *testing.T) engine.Sink {
			s, err := New(Config{Path: dir, Format: format, Roll: roll}, nil, "")
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Read:  func(t *testing.T) []string { return read(t, dir, format) },
		Crash: func(t *testing.T, s engine.Sink) { crash(s.(*Sink)) },
		ReadDeadLetters: func(t *testing.T) []string {
			files, err := filepath.Glob(filepath.Join(dir, deadDir, "*", "dead-*.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, f := range files {
				out = append(out, readValues(t, f, "jsonl")...)
			}
			return out
		},
	}
}

// readValues returns the record values in one output file.
func readValues(t *testing.T, path, format string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if strings.Contains(path, string(filepath.Separator)+".") {
		t.Fatalf("read a hidden file %s", path)
	}
	return parseValues(t, path, f, format)
}

// parseValues returns the record values in r, the contents of path.
func parseValues(t *testing.T, path string, r io.Reader, format string) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if format == "raw" {
			out = append(out, sc.Text())
			continue
		}
		var line struct {
			Value       *string `json:"value"`
			ValueBase64 string  `json:"value_base64"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("%s: %q is not JSON: %v", path, sc.Text(), err)
		}
		switch {
		case line.Value != nil:
			out = append(out, *line.Value)
		default:
			b, err := base64.StdEncoding.DecodeString(line.ValueBase64)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			out = append(out, string(b))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
