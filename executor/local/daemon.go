// Package local runs the build's private BuildKit daemon: a buildkitd this
// process starts, as root or rootless under rootlesskit, with all its state
// in one private directory, under kiln-reaper (reaper.go) so nothing of it
// outlives the executor. Every binary that starts one must import this
// package: the reaper is that binary re-executed.
package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/executor/helper"
	"github.com/moby/buildkit/client"
	"golang.org/x/sys/unix"
)

// maxUnixSocketPath is containerd's portable limit, which buildkitd enforces
// (below Linux's 107).
const maxUnixSocketPath = 104

// Daemon is a buildkitd this process started (directly as root, or
// under rootlesskit) with all state in one private directory.
type Daemon struct {
	cfg      engine.Config
	rootless bool
	dir      string // private state dir, removed on Close
	sockDir  string // short dir for the sockets when dir is too deep, else ""
	cmd      *exec.Cmd
	exited   chan struct{} // closed once the process has been waited for
	logs     *daemonLog
	client   *client.Client
	lock     *os.File // held while the state dir is in use (see engine.NewStateDir)

	closeOnce sync.Once
	closeErr  error
	// killAtOnce skips the graceful SIGTERM: set for an idle daemon whose
	// private state is deleted on Close anyway.
	killAtOnce atomic.Bool
}

// Start starts a private buildkitd under the reaper, rootless through
// rootlesskit unless this process is root and cfg does not ask for it, and
// returns once it answers ListWorkers. On any error nothing is left running
// or on disk.
func Start(ctx context.Context, cfg engine.Config) (_ *Daemon, err error) {
	cfg = cfg.WithDefaults()
	rootless := cfg.Rootless || os.Geteuid() != 0
	buildkitd, err := helper.FindBinary(cfg.BinDir, "buildkitd")
	if err != nil {
		return nil, err
	}
	var rootlesskit string
	if rootless {
		if rootlesskit, err = helper.FindBinary(cfg.BinDir, "rootlesskit"); err != nil {
			return nil, err
		}
	}
	var ociWrapper, runtimeEnv string
	if !cfg.PullOnly {
		if ociWrapper, runtimeEnv, err = findOCIRuntime(cfg.BinDir); err != nil {
			return nil, err
		}
	}
	d := &Daemon{cfg: cfg, rootless: rootless, exited: make(chan struct{})}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.dir, d.lock, err = engine.NewStateDir(cfg.StateParent); err != nil {
		return nil, err
	}
	runDir, err := d.makeRunDir()
	if err != nil {
		return nil, err
	}
	socket := filepath.Join(runDir, "buildkitd.sock")
	configFile := filepath.Join(d.dir, "buildkitd.toml")
	if err := os.WriteFile(configFile, []byte(daemonConfigTOML(cfg.RegistryConfigTOML, runDir, ociWrapper)), 0o600); err != nil {
		return nil, fmt.Errorf("writing buildkitd config: %w", err)
	}
	logFile, err := os.OpenFile(filepath.Join(d.dir, "buildkitd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating BuildKit log: %w", err)
	}
	d.logs = newDaemonLog(logFile, cfg.Logger, cfg.Debug)

	argv := append([]string{buildkitd}, buildkitdArgs(cfg, d.dir, socket, configFile)...)
	if rootless {
		argv = append([]string{rootlesskit, "--state-dir=" + filepath.Join(runDir, "rk"), "--net=host"}, argv...)
	}
	ready := listenReady(filepath.Join(runDir, "notify.sock"))
	defer ready.Close()
	cfg.Logger.Debugf("starting BuildKit: %s", strings.Join(argv, " "))
	if err := d.start(argv, runDir, ready.Env(), runtimeEnv, throwAwayStateEnv(cfg)); err != nil {
		return nil, err
	}

	readyCtx, cancel := context.WithTimeoutCause(ctx, cfg.ReadyTimeout,
		fmt.Errorf("BuildKit did not become ready within %s", cfg.ReadyTimeout))
	defer cancel()
	d.client, err = engine.ConnectWhenReady(readyCtx, "unix://"+socket, d.exited, ready.Ready())
	if err != nil {
		if errors.Is(err, engine.ErrDaemonExited) {
			err = fmt.Errorf("%w (%s)", err, d.cmd.ProcessState)
		}
		return nil, d.startError(err)
	}
	return d, nil
}

// throwAwayStateEnv tells buildkitd that its root is thrown away after this
// build (engine.Config.ThrowAwayState), so its databases skip fsync.
func throwAwayStateEnv(cfg engine.Config) string {
	if !cfg.ThrowAwayState() {
		return ""
	}
	return "KILN_THROWAWAY_STATE=1"
}

// rootlessSetupFailure matches rootlesskit failing to create the user
// namespace (see BuildKit's rootless troubleshooting).
var rootlessSetupFailure = regexp.MustCompile(`newuidmap|newgidmap|subuid|subgid|fork/exec /proc/self/exe|user namespace`)

// startError adds the daemon's last log lines, and what rootless needs when
// the namespace could not be set up.
func (d *Daemon) startError(err error) error {
	tail := d.logs.tail()
	msg := "starting BuildKit"
	if d.rootless && rootlessSetupFailure.MatchString(tail) {
		msg += " rootless (needs newuidmap/newgidmap, /etc/subuid and /etc/subgid entries for this user, and unprivileged user namespaces)"
	}
	if tail == "" {
		return fmt.Errorf("%s: %w", msg, err)
	}
	return fmt.Errorf("%s: %w; daemon log: %s", msg, err, tail)
}

// runDir holds the unix sockets (buildkitd's, its trace socket and
// rootlesskit's API socket). It is the state dir unless that is too deep
// for sun_path, then a short dir under TMPDIR.
func (d *Daemon) makeRunDir() (string, error) {
	const longestSocket = "/buildkitd.sock"
	if len(d.dir)+len(longestSocket) <= maxUnixSocketPath {
		return d.dir, nil
	}
	var err error
	if d.sockDir, err = os.MkdirTemp("", "kiln-"); err != nil {
		return "", fmt.Errorf("creating BuildKit socket dir: %w", err)
	}
	if len(d.sockDir)+len(longestSocket) > maxUnixSocketPath {
		return "", fmt.Errorf("BuildKit socket dir %s is too long for a unix socket: set TMPDIR to a shorter directory", d.sockDir)
	}
	return d.sockDir, nil
}

func (d *Daemon) Client(context.Context) (*client.Client, error) {
	if d.client == nil {
		return nil, errors.New("BuildKit daemon is not running")
	}
	return d.client, nil
}

// StoppedDuringBuild explains a daemon that exited while the executor still
// used it: the connection breaks first, so it waits up to wait for the
// exit to be seen. It returns nil while the daemon runs.
func (d *Daemon) StoppedDuringBuild(wait time.Duration) error {
	select {
	case <-d.exited:
	default:
		select {
		case <-d.exited:
		case <-time.After(wait):
			return nil
		}
	}
	if d.cmd.ProcessState == nil {
		return nil
	}
	how := "exit code " + strconv.Itoa(d.cmd.ProcessState.ExitCode())
	// The reaper reports a daemon killed by a signal as 128+signal.
	if code := d.cmd.ProcessState.ExitCode(); code > 128 && code < 128+65 {
		how = "killed by " + unix.SignalName(syscall.Signal(code-128))
	}
	return fmt.Errorf("the BuildKit daemon stopped during the build (%s): something outside the build ended it, often the out-of-memory killer; give the build more memory and run it again", how)
}

// Close stops the daemon (SIGTERM, then SIGKILL to its whole process group
// after the grace period) and removes all of its state.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		if d.client != nil {
			d.client.Close()
		}
		d.stop()
		if d.logs != nil {
			d.logs.Close()
		}
		d.closeErr = d.removeState(d.cfg.RemoveAfterExit)
		if d.lock != nil {
			d.lock.Close()
		}
	})
	return d.closeErr
}

// NoGracefulStop makes Close kill the daemon's process group at once when
// its state is thrown away: nothing in it outlives the build, and the
// daemon's mount namespace (rootful) or rootlesskit's (rootless) takes the
// snapshot mounts along. A persistent --cache-dir root still gets a clean
// shutdown.
func (d *Daemon) NoGracefulStop() {
	if d.cfg.ThrowAwayState() {
		d.killAtOnce.Store(true)
	}
}

// RemoveStateDir removes a private dir a killed build left (the sweep of
// engine.SweepStaleDirs), as this user's daemons leave them.
func RemoveStateDir(dir string) error {
	return helper.RemovePrivateDir(dir, os.Geteuid() != 0, "")
}

// removeState removes the state and socket dirs, later (by a process the
// executor does not wait for, see helper.RemoveAfterExit) when asked to.
func (d *Daemon) removeState(later bool) error {
	var dirs []string
	for _, dir := range []string{d.dir, d.sockDir} {
		if dir != "" {
			dirs = append(dirs, dir)
		}
	}
	if later && d.lock != nil {
		return helper.RemoveAfterExit(dirs, []*os.File{d.lock}, d.rootless, d.cfg.BinDir)
	}
	var errs []error
	for _, dir := range dirs {
		errs = append(errs, helper.RemovePrivateDir(dir, d.rootless && dir == d.dir, d.cfg.BinDir))
	}
	return errors.Join(errs...)
}
