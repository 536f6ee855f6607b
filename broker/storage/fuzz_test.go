package storage

import (
	"os"
	"testing"
)

// FuzzRecovery opens a partition whose active segment holds arbitrary
// bytes. Recovery must not panic, and what it keeps must read back as valid
// batches with contiguous offsets.
func FuzzRecovery(f *testing.F) {
	one := makeBatch(1000, "a", "b")
	two := append(append([]byte(nil), one...), one...)
	patchBatch(two[len(one):], 2)
	f.Add(one)
	f.Add(two)
	f.Add(two[:len(two)-5])
	f.Add(append(append([]byte(nil), one...), make([]byte, 70)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(segmentName(dir, 0, logSuffix), data, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := OpenPartition(dir, quietConfig(Config{}), false)
		if err != nil {
			return // refusing to open is fine; panicking or serving garbage is not
		}
		defer p.Close()
		offsets := readAll(t, p)
		if len(offsets) > 0 && offsets[0] != 0 {
			t.Fatalf("first batch at offset %d", offsets[0])
		}
	})
}
