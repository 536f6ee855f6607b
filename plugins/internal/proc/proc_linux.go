package proc

import (
	"os/exec"
	"runtime"
	"sync"
)

type startReq struct {
	cmd  *exec.Cmd
	then func(pid int) error // run on the same thread, right after the fork
	done chan error
}

var (
	startOnce sync.Once
	starts    chan startReq
)

// forker is the goroutine that forks every child: locked to its thread
// and never returning, so the thread (the children's "parent thread" for
// the parent-death signal) lives as long as the process.
func forker() {
	runtime.LockOSThread()
	for r := range starts {
		err := r.cmd.Start()
		if err == nil && r.then != nil {
			if err = r.then(r.cmd.Process.Pid); err != nil {
				_ = r.cmd.Process.Kill()
				_ = r.cmd.Wait()
			}
		}
		r.done <- err
	}
}

// Start starts cmd from the process's forking thread (see the package
// doc) and, if then is not nil, calls it with the new pid before anything
// else is forked; when then fails the child is killed and reaped and its
// error returned.
func Start(cmd *exec.Cmd, then func(pid int) error) error {
	startOnce.Do(func() {
		starts = make(chan startReq)
		go forker()
	})
	done := make(chan error, 1)
	starts <- startReq{cmd, then, done}
	return <-done
}
