package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFileCheckpoints(t *testing.T) {
	dir := t.TempDir()
	c := NewFileCheckpoints(dir, "p")
	ctx := context.Background()
	if e, at, err := c.Load(ctx); err != nil || e != 0 || at != nil {
		t.Fatalf("empty store: %d %v %v", e, at, err)
	}
	want := Positions{{Topic: "t", Partition: 1}: 42, {Topic: "t", Partition: 0}: 7}
	if err := c.Save(ctx, 3, want); err != nil {
		t.Fatal(err)
	}
	// A second store on the same directory (a restarted process) sees it.
	e, at, err := NewFileCheckpoints(dir, "p").Load(ctx)
	if err != nil || e != 3 || !at.Equal(want) {
		t.Fatalf("reload: %d %v %v", e, at, err)
	}
	// Only the checkpoint file is left: no temporary files.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the checkpoint", len(entries))
	}
	os.WriteFile(filepath.Join(dir, "p.checkpoint.json"), []byte("{torn"), 0o644)
	if _, _, err := c.Load(ctx); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("a corrupt checkpoint must say what to do: %v", err)
	}
}

func TestPositionsJSONIsStable(t *testing.T) {
	p := Positions{{Topic: "b", Partition: 0}: 1, {Topic: "a", Partition: 2}: 5, {Topic: "a", Partition: 1}: 9}
	b1, _ := p.MarshalJSON()
	b2, _ := p.Clone().MarshalJSON()
	if string(b1) != string(b2) || !strings.HasPrefix(string(b1), `[{"topic":"a","partition":1,`) {
		t.Fatalf("encoding not sorted or not stable: %s", b1)
	}
	var q Positions
	if err := q.UnmarshalJSON(b1); err != nil || !q.Equal(p) {
		t.Fatalf("round trip: %v %v", q, err)
	}
}
