//go:build !linux && !windows

package host

import (
	"os/exec"
	"syscall"
)

// isolate puts the plugin in its own process group. Without a parent-death
// signal, the SDK's parent watch is what ends a plugin whose host died.
var isolate = func(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func killGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

func isolateGroupOnly(cmd *exec.Cmd) { isolate(cmd) }

// limitMemory: memory: is enforced on Linux only; New refuses it elsewhere.
func limitMemory(int, int64) error { return errMemoryLinuxOnly }

const memoryLimitSupported = false
