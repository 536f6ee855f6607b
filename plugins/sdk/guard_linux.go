package sdk

import (
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/plugins/internal/proc"
)

// guardEnv names the variable that turns a plugin binary into its own
// guard; it holds the pid of the plugin the guard watches.
const guardEnv = "SLUICE_PLUGIN_GUARD"

// A plugin's host starts it in a process group of its own with the
// parent-death signal SIGKILL, so the plugin dies with the host however the
// host dies. Processes the plugin starts do not inherit that signal: after
// a SIGKILL of the host they would live on, reparented to init. So Serve
// starts a guard beside the plugin: the plugin binary again, in the
// plugin's group, with the parent-death signal SIGTERM. When the plugin
// dies (the host stopped it, or died and took it along), the guard kills
// the whole group, itself included: whatever the plugin started, however
// it started it, goes with it.
//
// The guard is recognised here, in the package's init, before the plugin's
// own main or package variables run: the guard must not load what the
// plugin loads.
func init() {
	if v := os.Getenv(guardEnv); v != "" {
		plugin, err := strconv.Atoi(v)
		if err != nil {
			os.Exit(2)
		}
		runGuard(plugin)
	}
}

// runGuard waits until the plugin is gone, then kills its group. It
// never returns.
func runGuard(plugin int) {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	// The parent-death signal fired before Notify, or the plugin died
	// before the signal was set: the parent is no longer the plugin.
	tick := time.NewTicker(parentPollInterval)
	for os.Getppid() == plugin {
		select {
		case <-term:
			killOwnGroup()
		case <-tick.C:
		}
	}
	killOwnGroup()
}

func killOwnGroup() {
	_ = syscall.Kill(0, syscall.SIGKILL) // the plugin's group, this guard included
	os.Exit(0)
}

// startGuard starts the plugin's guard when a host started the plugin in
// a group of its own (never kill a group the plugin does not lead).
func startGuard() {
	if os.Getenv(ParentPIDEnv) == "" || syscall.Getpgrp() != os.Getpid() {
		return
	}
	if fd, err := strconv.Atoi(os.Getenv(ShmFDEnv)); err == nil {
		// The host's shared memory is for this process, not for the guard
		// nor anything else the plugin starts.
		syscall.CloseOnExec(fd)
	}
	exe, err := os.Executable()
	if err != nil {
		Logger().Warn("no guard for the plugin's child processes: cannot find its executable", "err", err)
		return
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), guardEnv+"="+strconv.Itoa(os.Getpid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := proc.Start(cmd, nil); err != nil {
		Logger().Warn("no guard for the plugin's child processes", "err", err)
		return
	}
	go func() { _ = cmd.Wait() }()
}
