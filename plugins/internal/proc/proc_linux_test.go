package proc

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// startFromDyingThread starts sleep with the parent-death signal SIGKILL
// from a goroutine that locks its thread and returns without unlocking,
// which ends that thread, using start.
func startFromDyingThread(t *testing.T, start func(*exec.Cmd) error) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if syscall.Gettid() == os.Getpid() {
			// The main thread is never ended, only parked: use another.
			inner := make(chan error, 1)
			go func() {
				runtime.LockOSThread()
				inner <- start(cmd)
			}()
			done <- <-inner
			return
		}
		done <- start(cmd)
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd
}

// exited waits up to d for cmd to end.
func exited(cmd *exec.Cmd, d time.Duration) bool {
	ch := make(chan struct{})
	go func() { cmd.Wait(); close(ch) }()
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// The reason for the package: a child forked from a thread that then exits
// gets its parent-death signal although its parent process lives on; one
// started through Start does not.
func TestParentDeathSignalFollowsTheForkingThread(t *testing.T) {
	direct := startFromDyingThread(t, (*exec.Cmd).Start)
	if !exited(direct, 5*time.Second) {
		t.Fatal("a child forked from an exiting thread survived it; the kernel no longer ties the parent-death signal to the thread, and the test proves nothing")
	}
	viaStart := startFromDyingThread(t, func(c *exec.Cmd) error { return Start(c, nil) })
	if exited(viaStart, 500*time.Millisecond) {
		t.Fatal("a child started through Start died with the thread of its caller")
	}
}

func TestStartThen(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	var got int
	if err := Start(cmd, func(pid int) error { got = pid; return nil }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if got != cmd.Process.Pid {
		t.Errorf("then got pid %d, want %d", got, cmd.Process.Pid)
	}
	// A failing then kills and reaps the child.
	cmd = exec.Command("sleep", "60")
	var pid int
	err := Start(cmd, func(p int) error { pid = p; return os.ErrInvalid })
	if err != os.ErrInvalid {
		t.Fatalf("Start = %v, want then's error", err)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Errorf("child %d still exists after then failed", pid)
	}
}
