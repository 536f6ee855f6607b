// Package filetest reads a file sink's visible output in tests.
package filetest

import (
	"bufio"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/sinks/file"
)

// Lines returns every line of the visible output files under dir, file by
// file in name order; none when dir does not exist.
func Lines(t testing.TB, dir string) []string {
	t.Helper()
	names, err := file.Visible(dir)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, name := range names {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return lines
}
