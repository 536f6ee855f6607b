package host

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"

	"github.com/hashicorp/go-plugin/runner"

	"github.com/sluicehq/sluice/plugins/internal/proc"
)

// procRunner starts a plugin for go-plugin (ClientConfig.RunnerFunc) the
// way a plugin must start here: forked from the process's forking thread
// (plugins/internal/proc: the parent-death signal fires only when the
// host dies) and with its memory limit set before it is handed over.
type procRunner struct {
	cmd            *exec.Cmd
	stdout, stderr io.ReadCloser
	memory         int64 // bytes; 0 = no limit
	pid            int
}

var _ runner.Runner = (*procRunner)(nil)

// newRunner prepares cmd (not started) with the environment go-plugin
// built for the handshake (base.Env) appended.
func newRunner(cmd, base *exec.Cmd, memory int64) (*procRunner, error) {
	cmd.Env = append(base.Env, cmd.Env...)
	cmd.Stdin = base.Stdin
	r := &procRunner{cmd: cmd, memory: memory}
	var err error
	if r.stdout, err = cmd.StdoutPipe(); err != nil {
		return nil, err
	}
	if r.stderr, err = cmd.StderrPipe(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *procRunner) Start(context.Context) error {
	var then func(int) error
	if r.memory > 0 {
		then = func(pid int) error { return limitMemory(pid, r.memory) }
	}
	if err := proc.Start(r.cmd, then); err != nil {
		return err
	}
	r.pid = r.cmd.Process.Pid
	return nil
}

func (r *procRunner) Wait(context.Context) error { return r.cmd.Wait() }

func (r *procRunner) Kill(context.Context) error {
	if r.cmd.Process == nil {
		return nil
	}
	if err := r.cmd.Process.Kill(); !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func (r *procRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *procRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *procRunner) Name() string          { return r.cmd.Path }
func (r *procRunner) ID() string {
	if r.pid == 0 {
		return ""
	}
	return strconv.Itoa(r.pid)
}

func (r *procRunner) Diagnose(context.Context) string {
	return "check that the plugin is built for this system and serves a Sluice transform (sdk.Serve)"
}

// The plugin runs beside the host: addresses mean the same on both sides.
func (r *procRunner) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (r *procRunner) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }

var errMemoryLinuxOnly = errors.New("memory: is enforced on Linux only (RLIMIT_DATA); remove it on this system")
