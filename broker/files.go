package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockGrace is how long opening a data directory waits for another holder
// of its lock to let go: a broker killed a moment ago (a restart right
// after SIGKILL) holds it until the kernel has torn the process down.
// Longer than that, the holder is a broker that is running.
const lockGrace = 3 * time.Second

// lockDir takes an exclusive lock on dir so two brokers never share one
// data directory. The lock lives as long as the returned file is open.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open data directory lock: %w", err)
	}
	deadline := time.Now().Add(lockGrace)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.Close()
	return nil, fmt.Errorf("data directory %s is in use by another broker (lock: %w, still held after %v); stop it or use another --data", dir, err, lockGrace)
}
