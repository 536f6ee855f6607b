package main

import (
	"bytes"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// janitor remembers the child processes and the temp dir, so that every
// way out of the benchmark (success, a fatal error, Ctrl-C) leaves neither
// behind.
type janitor struct {
	mu    sync.Mutex
	once  sync.Once
	dir   string
	procs map[int]bool // process group ids of children still running
}

var jan = &janitor{procs: map[int]bool{}}

func (j *janitor) setDir(dir string) { j.mu.Lock(); j.dir = dir; j.mu.Unlock() }
func (j *janitor) add(pid int)       { j.mu.Lock(); j.procs[pid] = true; j.mu.Unlock() }
func (j *janitor) remove(pid int)    { j.mu.Lock(); delete(j.procs, pid); j.mu.Unlock() }

// cleanup kills every child still running, with its own children, and
// removes the temp dir. Only the first call does anything.
func (j *janitor) cleanup() {
	j.once.Do(func() {
		j.mu.Lock()
		defer j.mu.Unlock()
		for pgid := range j.procs {
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
		if j.dir != "" {
			os.RemoveAll(j.dir)
		}
	})
}

// fatalf reports a failure that ends the benchmark, after cleaning up.
func fatalf(format string, args ...any) {
	log.Printf(format, args...)
	jan.cleanup()
	os.Exit(1)
}

// child is a running or finished subprocess whose output goes to a log file.
type child struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{} // closed once Wait returned; then err and wall are set
	err     error
	start   time.Time     // just before exec
	wall    time.Duration // from start to exit
}

// startChild starts path with args, output to logPath and env added to
// this process's environment.
func startChild(name, logPath string, env []string, path string, args ...string) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	// Its own process group: a Ctrl-C at the terminal reaches only the
	// benchmark, which then stops the children (and any of theirs) itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	c := &child{name: name, logPath: logPath, cmd: cmd, exited: make(chan struct{}), start: start}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	jan.add(pid)
	go func() {
		c.err = cmd.Wait()
		c.wall = time.Since(start)
		jan.remove(pid)
		logf.Close()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) hasExited() bool {
	select {
	case <-c.exited:
		return true
	default:
		return false
	}
}

// wait waits for the child to exit by itself; after timeout it kills it.
// The error says how it ended if that was not exit status 0.
func (c *child) wait(timeout time.Duration) error {
	select {
	case <-c.exited:
	case <-time.After(timeout):
		c.kill()
		return fmt.Errorf("%s did not finish within %v (-timeout) and was killed", c.name, timeout)
	}
	if c.err != nil {
		return fmt.Errorf("%s: %w", c.name, c.err)
	}
	return nil
}

// stop asks the child to finish with SIGTERM and waits for it; a child
// that does not exit within grace is killed.
func (c *child) stop(grace time.Duration) error {
	if !c.hasExited() {
		c.cmd.Process.Signal(syscall.SIGTERM)
	}
	return c.wait(grace)
}

// kill ends the child's whole process group at once and waits for it.
func (c *child) kill() {
	syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.exited
}

// usage is what the kernel accounted to the exited child itself: peak
// resident set and CPU time (user + system).
func (c *child) usage() (rssKiB int64, cpu time.Duration) {
	ru, ok := c.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, 0
	}
	cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return ru.Maxrss, cpu // Maxrss is in KiB on Linux
}

// tail returns the last lines of the child's log, indented, for an error
// message.
func (c *child) tail() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return "  (no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 25 {
		lines = lines[len(lines)-25:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return "  (log is empty)"
	}
	return "  " + strings.Join(lines, "\n  ")
}

// failed logs the child's log tail, for whoever reports err next, and
// returns err.
func (c *child) failed(err error) error {
	log.Printf("%s failed; last lines of its log %s:\n%s", c.name, filepath.Base(c.logPath), c.tail())
	return err
}

// sluiceBinary returns the binary to measure: given, or built from
// ./cmd/sluice into dir.
func sluiceBinary(given, dir string) (string, error) {
	if given != "" {
		return filepath.Abs(given)
	}
	out := filepath.Join(dir, "sluice")
	log.Print("building ./cmd/sluice")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/sluice")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/sluice: %w (run the benchmark from the repository root)", err)
	}
	return out, nil
}

// sluiceVersion is what `sluice version` prints, for the report header.
func sluiceVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return string(bytes.TrimSpace(out))
}
