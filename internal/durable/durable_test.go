package durable

import (
	"os"
	"path/filepath"
	"testing"
)

// WriteFile creates the directory, replaces the content whole and leaves
// no temporary file behind.
func TestWriteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "f")
	for _, want := range []string{"first", "second, longer"} {
		if err := WriteFile(path, []byte(want)); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries; want only f", len(entries))
	}
	if err := SyncDir(filepath.Join(path, "missing")); err == nil {
		t.Fatal("SyncDir of a missing directory succeeded")
	}
}
