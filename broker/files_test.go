package broker

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A lock let go within lockGrace (a broker killed a moment ago) is taken;
// one held on is refused after the grace.
func TestLockDirWaitsForAHolderThatExits(t *testing.T) {
	dir := t.TempDir()
	holder, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(holder.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		time.Sleep(lockGrace / 10)
		holder.Close()
		close(released)
	}()
	f, err := lockDir(dir)
	if err != nil {
		t.Fatalf("lock released within the grace was not taken: %v", err)
	}
	<-released
	// Now f holds it for good: a second taker is refused.
	if g, err := lockDir(dir); err == nil {
		g.Close()
		t.Fatal("a lock held past the grace was taken")
	}
	f.Close()
}
