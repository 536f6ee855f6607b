//go:build !linux

package proc

import "os/exec"

// Start starts cmd and, if then is not nil, calls it with the new pid;
// when then fails the child is killed and reaped. Without a parent-death
// signal the thread that forks does not matter.
func Start(cmd *exec.Cmd, then func(pid int) error) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	if then != nil {
		if err := then(cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return err
		}
	}
	return nil
}
