//go:build unix

// Package flock takes advisory locks on open files (flock(2)), to keep
// processes from sharing what only one may use: a file sink's commit
// step, a task group member's identity.
package flock

import (
	"errors"
	"os"
	"syscall"
)

// Works is whether locks exclude other processes on this platform.
const Works = true

// Lock takes an exclusive lock on f, waiting for it.
func Lock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// TryLock takes an exclusive lock on f if nobody holds one; ok is false
// when another open file (in this or another process) holds it.
func TryLock(f *os.File) (ok bool, err error) {
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

// Unlock releases f's lock (closing f does too).
func Unlock(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
