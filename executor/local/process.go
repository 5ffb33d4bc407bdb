package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/kilnbuild/kiln/executor/helper"
)

// start runs argv under the reaper (reaper.go) in its own process group with
// extraEnv (entries may be empty). The forking goroutine keeps its OS thread
// locked until the process exits, because Pdeathsig fires when the forking
// thread (not the process) dies.
func (d *Daemon) start(argv []string, runDir string, extraEnv ...string) error {
	cmd, err := d.reaperCommand(argv)
	if err != nil {
		return err
	}
	cmd.Dir = d.dir
	// Rootless runc keeps container state in $XDG_RUNTIME_DIR/runc (else
	// /run/runc, unwritable); keeping it private also makes cleanup complete.
	cmd.Env = append(withoutNotifySocket(os.Environ()), "XDG_RUNTIME_DIR="+runDir)
	for _, kv := range extraEnv {
		if kv != "" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if d.rootless && (os.Getenv("USER") == "" || os.Getenv("USER") == "root") {
		// buildkitd and runc treat USER=root (set in Kaniko's images) as a
		// rootful configuration and reach for /run; inside rootlesskit the
		// process is the namespace's root, not the host's.
		cmd.Env = append(cmd.Env, "USER=kiln")
	}
	cmd.Stdout = d.logs
	cmd.Stderr = d.logs
	// Grandchildren may inherit the log pipe; do not hang Wait on them.
	cmd.WaitDelay = 2 * time.Second
	// SIGTERM, not SIGKILL: the reaper then kills what the build started
	// and removes its state (the daemon runs in a private mount namespace
	// as root, so no snapshot mount outlives it).
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGTERM,
	}
	d.cmd = cmd
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		d.cfg.Logger.Debugf("BuildKit daemon exited: %v", err)
		close(d.exited)
	}()
	if err := <-started; err != nil {
		close(d.exited)
		return fmt.Errorf("starting %s: %w", argv[0], err)
	}
	return nil
}

func (d *Daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	pgid := d.cmd.Process.Pid
	select {
	case <-d.exited:
	default:
		if d.killAtOnce.Load() {
			break
		}
		// rootlesskit forwards SIGTERM to buildkitd, which shuts down cleanly.
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(d.cfg.StopGracePeriod):
			d.cfg.Logger.Warnf("BuildKit daemon did not stop within %s; killing it", d.cfg.StopGracePeriod)
		}
	}
	// Whatever is left of the group (rootlesskit child, runc) goes too.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-d.exited
	waitGroupGone(pgid, 5*time.Second)
}

// waitGroupGone waits until no live process is left in the process group,
// so the state dir is not removed under a dying process.
func waitGroupGone(pgid int, budget time.Duration) {
	deadline := time.Now().Add(budget)
	for delay := time.Millisecond; time.Now().Before(deadline); delay = min(delay*2, 100*time.Millisecond) {
		if !groupAlive(pgid) {
			return
		}
		time.Sleep(delay)
	}
}

// groupAlive reports whether a process of the group has not exited yet.
// Zombies do not count: they hold no files or mounts, and orphaned ones (a
// killed rootlesskit's child and buildkitd) wait for PID 1 to reap them,
// which is kiln itself in a pod and never happens.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		if state, group, ok := parseProcStat(stat); ok && group == pgid && state != 'Z' && state != 'X' {
			return true
		}
	}
	return false
}

// parseProcStat returns the state and process group from /proc/<pid>/stat.
func parseProcStat(stat []byte) (state byte, pgrp int, ok bool) {
	state, _, pgrp, ok = helper.ProcStat(stat)
	return state, pgrp, ok
}
