package host

import (
	"fmt"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// isolate puts the plugin in its own process group (so a terminal's ^C
// reaches the host alone, which then stops its plugins in order, and so
// killing the group also takes the plugin's own children) and asks the
// kernel to SIGKILL it when the host dies, even by SIGKILL. The signal is
// tied to the thread that forks: plugins/internal/proc forks from one that
// lives as long as the host.
var isolate = func(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup kills the plugin and anything it started.
func killGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// isolateGroupOnly is isolate without the parent-death signal (tests of
// the SDK's parent watch).
func isolateGroupOnly(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// limitMemory caps the plugin process's private writable memory (heap,
// anonymous mappings, not the shared-memory batches) with RLIMIT_DATA,
// which its children inherit. RLIMIT_AS would count address space a Go
// runtime reserves without using (a Go program cannot even start under an
// address-space limit of 256 MiB). The plugin runs its first instructions
// before the limit is set: what it maps in those microseconds is not
// refused, but counts against the limit afterwards.
func limitMemory(pid int, bytes int64) error {
	lim := unix.Rlimit{Cur: uint64(bytes), Max: uint64(bytes)}
	if err := unix.Prlimit(pid, unix.RLIMIT_DATA, &lim, nil); err != nil {
		return fmt.Errorf("set the memory limit of plugin process %d: %w", pid, err)
	}
	return nil
}

// memoryLimitSupported says whether memory: can be enforced here.
const memoryLimitSupported = true
