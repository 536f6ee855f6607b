// Package proc starts the processes of a plugin's life: the plugin process
// the host starts, and the guard a plugin starts beside itself.
//
// On Linux a process is told to die with its parent through the
// parent-death signal (PR_SET_PDEATHSIG). The kernel sends it when the
// parent *thread* that forked the child exits, not the parent process, and
// a Go program's threads are shared by its goroutines: a goroutine that
// locks its thread (runtime.LockOSThread) and returns without unlocking
// takes the thread with it. A child forked from such a thread would be
// killed at a random moment. Start therefore forks every child from one
// goroutine that locks its thread and never returns, so that thread lives
// as long as the process and the signal fires only when the process dies.
// Locking around each start instead would not do: after the unlock the
// thread goes back to the runtime, and any goroutine may lock it and exit.
package proc
