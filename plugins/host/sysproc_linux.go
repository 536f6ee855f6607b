package host

import (
	"os/exec"
	"syscall"
)

// isolate puts the plugin in its own process group (so a terminal's ^C
// reaches the host alone, which then stops its plugins in order, and so
// killing the group also takes the plugin's own children) and asks the
// kernel to SIGKILL it when the host dies, even by SIGKILL.
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
