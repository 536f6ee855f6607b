package group

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzOffsetLog feeds arbitrary bytes to the committed-offsets log replay:
// Open must never panic, and whatever it keeps must survive a commit and a
// reopen unchanged.
func FuzzOffsetLog(f *testing.F) {
	seed := f.TempDir()
	s, _ := OpenOffsetStore(seed)
	s.Commit("g", []Offset{{TopicPartition: TopicPartition{"t", 0}, Offset: 5, Metadata: "m"}})
	s.Commit("h", []Offset{{TopicPartition: TopicPartition{"t", 1}, Offset: 7}})
	s.DeleteGroup("h")
	s.Close()
	good, _ := os.ReadFile(filepath.Join(seed, "offsets.log"))
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "offsets.log"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := OpenOffsetStore(dir)
		if err != nil {
			return // a damaged log is refused with an error, not a panic
		}
		before := map[string][]Offset{}
		for _, g := range s.Groups() {
			before[g] = s.Fetch(g, nil)
		}
		if err := s.Commit("fuzz", []Offset{{TopicPartition: TopicPartition{"x", 0}, Offset: 1}}); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s, err = OpenOffsetStore(dir)
		if err != nil {
			t.Fatalf("reopen after a commit: %v", err)
		}
		defer s.Close()
		for g, offs := range before {
			if g == "fuzz" {
				continue
			}
			after := s.Fetch(g, nil)
			if len(after) != len(offs) {
				t.Fatalf("group %s: %d offsets before, %d after reopen", g, len(offs), len(after))
			}
		}
		if got := s.Fetch("fuzz", []TopicPartition{{"x", 0}}); got[0].Offset != 1 {
			t.Fatalf("the commit after recovery was lost: %+v", got)
		}
	})
}
