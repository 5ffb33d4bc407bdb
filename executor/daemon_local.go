package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/platforms"
	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/executor/ociruntime"
	"github.com/moby/buildkit/client"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// maxUnixSocketPath is containerd's portable limit, which buildkitd enforces
// (below Linux's 107).
const maxUnixSocketPath = 104

// localDaemon is a buildkitd this process started (directly as root, or
// under rootlesskit) with all state in one private directory.
type localDaemon struct {
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

func startLocal(ctx context.Context, cfg engine.Config, rootless bool) (_ engine.Daemon, err error) {
	buildkitd, err := engine.FindBinary(cfg.BinDir, "buildkitd")
	if err != nil {
		return nil, err
	}
	var rootlesskit string
	if rootless {
		if rootlesskit, err = engine.FindBinary(cfg.BinDir, "rootlesskit"); err != nil {
			return nil, err
		}
	}
	var ociWrapper, runtimeEnv string
	if !cfg.PullOnly {
		if ociWrapper, runtimeEnv, err = findOCIRuntime(cfg.BinDir); err != nil {
			return nil, err
		}
	}
	d := &localDaemon{cfg: cfg, rootless: rootless, exited: make(chan struct{})}
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

// throwAwayStateEnv tells a buildkitd with a private root, deleted after
// this build, to skip its databases' fsyncs (kiln's BuildKit patch); the
// --cache-dir root outlives the build and stays durable.
func throwAwayStateEnv(cfg engine.Config) string {
	if cfg.Root != "" {
		return ""
	}
	return "KILN_THROWAWAY_STATE=1"
}

// rootlessSetupFailure matches rootlesskit failing to create the user
// namespace (see BuildKit's rootless troubleshooting).
var rootlessSetupFailure = regexp.MustCompile(`newuidmap|newgidmap|subuid|subgid|fork/exec /proc/self/exe|user namespace`)

// startError adds the daemon's last log lines, and what rootless needs when
// the namespace could not be set up.
func (d *localDaemon) startError(err error) error {
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
func (d *localDaemon) makeRunDir() (string, error) {
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

func buildkitdArgs(cfg engine.Config, dir, socket, configFile string) []string {
	root := cfg.Root
	if root == "" {
		root = filepath.Join(dir, "root")
	}
	args := []string{
		"--root=" + root,
		"--addr=unix://" + socket,
		"--config=" + configFile,
		"--oci-worker=true",
		"--containerd-worker=false",
		// Kaniko runs RUN in the host network.
		"--oci-worker-net=host",
		// A private root lives for one build, so collecting it is wasted
		// work; a persistent one must stay bounded (BuildKit's default policy).
		"--oci-worker-gc=" + strconv.FormatBool(cfg.Root != ""),
		"--allow-insecure-entitlement=network.host",
	}
	if cfg.NoProcessSandbox {
		args = append(args, "--oci-worker-no-process-sandbox")
	}
	if cfg.Debug {
		args = append(args, "--debug")
	}
	return args
}

// findOCIRuntime returns kiln-runc, which RUN steps run through, and the
// variable telling it where the real runc is.
func findOCIRuntime(binDir string) (wrapper, runtimeEnv string, err error) {
	if wrapper, err = engine.FindBinary(binDir, ociruntime.BinaryName); err != nil {
		return "", "", err
	}
	runc, err := exec.LookPath("runc")
	if err == nil {
		runc, err = filepath.Abs(runc)
	}
	if err != nil {
		return "", "", fmt.Errorf("runc not found on PATH: BuildKit runs RUN steps with it; install it (Debian package runc): %w", err)
	}
	return wrapper, ociruntime.RuntimeEnv + "=" + runc, nil
}

// daemonConfigTOML appends kiln's settings after the caller's tables (TOML
// top-level keys would otherwise land inside the caller's last table).
// ociBinary replaces runc for the OCI worker unless empty.
func daemonConfigTOML(registryTOML, runDir, ociBinary string) string {
	var b strings.Builder
	b.WriteString(registryTOML)
	b.WriteString("\n\n")
	// Naming the platforms skips buildkitd probing every emulator at
	// start-up; a RUN for another platform still finds its emulator.
	fmt.Fprintf(&b, "[worker.oci]\n  platforms = [%s]\n", strconv.Quote(platforms.Format(platforms.Normalize(platforms.DefaultSpec()))))
	if ociBinary != "" {
		fmt.Fprintf(&b, "  binary = %s\n", strconv.Quote(ociBinary))
	}
	b.WriteString("\n")
	// The default trace socket is under /run/buildkit, unwritable rootless.
	fmt.Fprintf(&b, "[otel]\n  socketPath = %s\n\n", strconv.Quote(filepath.Join(runDir, "otel.sock")))
	// No CDI devices are used; skipping discovery saves start-up work and warnings.
	b.WriteString("[cdi]\n  disabled = true\n\n")
	// Nobody reads a private daemon's build history; recording it makes
	// every solve also write a provenance document, its logs and trace.
	b.WriteString("[history]\n  maxEntries = 0\n")
	return b.String()
}

// start runs argv under the reaper (reap.go) in its own process group with
// extraEnv (entries may be empty). The forking goroutine keeps its OS thread
// locked until the process exits, because Pdeathsig fires when the forking
// thread (not the process) dies.
func (d *localDaemon) start(argv []string, runDir string, extraEnv ...string) error {
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

func (d *localDaemon) Client(context.Context) (*client.Client, error) {
	if d.client == nil {
		return nil, errors.New("BuildKit daemon is not running")
	}
	return d.client, nil
}

// stoppedDuringBuild explains a daemon that exited while the executor still
// used it: the connection breaks first, so it waits up to wait for the
// exit to be seen. It returns nil while the daemon runs.
func (d *localDaemon) stoppedDuringBuild(wait time.Duration) error {
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
func (d *localDaemon) Close() error {
	d.closeOnce.Do(func() {
		if d.client != nil {
			d.client.Close()
		}
		d.stop()
		if d.logs != nil {
			d.logs.Close()
		}
		d.closeErr = d.removeState()
		if d.lock != nil {
			d.lock.Close()
		}
	})
	return d.closeErr
}

// noGracefulStop makes Close kill the daemon's process group at once when
// its state is private: nothing in it outlives the build, and the daemon's
// mount namespace (rootful) or rootlesskit's (rootless) takes the snapshot
// mounts along. A persistent --cache-dir root still gets a clean shutdown.
func (d *localDaemon) noGracefulStop() {
	if d.cfg.Root == "" {
		d.killAtOnce.Store(true)
	}
}

func (d *localDaemon) stop() {
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
	state, _, pgrp, ok = procStat(stat)
	return state, pgrp, ok
}

// removeStaleState removes a private dir a killed build left (see
// engine.SweepStaleDirs): its layers may hold subordinate-ID files.
func removeStaleState(dir string) error {
	d := &localDaemon{dir: dir, rootless: os.Geteuid() != 0}
	return d.removeState()
}

func (d *localDaemon) removeState() error {
	var errs []error
	if d.dir != "" {
		var err error
		if d.rootless {
			// Layers hold files owned by subordinate IDs that only the
			// namespace's root can delete; trying os.RemoveAll first would
			// walk every file of an unpacked base image for nothing.
			if err = d.removeInUserNamespace(); err != nil && os.RemoveAll(d.dir) == nil {
				err = nil
			}
		} else {
			err = removeAllParallel(d.dir)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("removing BuildKit state %s: %w", d.dir, err))
		}
	}
	if d.sockDir != "" {
		errs = append(errs, os.RemoveAll(d.sockDir))
	}
	return errors.Join(errs...)
}

func (d *localDaemon) removeInUserNamespace() error {
	rootlesskit, err := engine.FindBinary(d.cfg.BinDir, "rootlesskit")
	if err != nil {
		return err
	}
	rm, err := exec.LookPath("rm")
	if err != nil {
		return fmt.Errorf("rm is needed to remove rootless BuildKit state: %w", err)
	}
	stateDir, err := os.MkdirTemp("", "kiln-rk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stateDir)
	cmd := exec.Command(rootlesskit, "--state-dir="+filepath.Join(stateDir, "s"), "--net=host", rm, "-rf", "--", d.dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, engine.OneLine(string(out)))
	}
	if _, err := os.Stat(d.dir); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("still present after removal in the user namespace (stat: %v)", err)
	}
	return nil
}

// daemonLog receives the daemon's stdout and stderr: it keeps a log file,
// the last lines for error messages, and forwards lines at debug level.
type daemonLog struct {
	mu      sync.Mutex
	file    *os.File
	logger  logrus.FieldLogger
	forward bool
	lines   engine.LineWriter
	last    []string
}

const daemonLogTailLines = 15

// newDaemonLog writes to file unless it is nil.
func newDaemonLog(file *os.File, logger logrus.FieldLogger, forward bool) *daemonLog {
	l := &daemonLog{file: file, logger: logger, forward: forward}
	l.lines.Emit = l.addLine
	return l
}

func (l *daemonLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		_, _ = l.file.Write(p)
	}
	return l.lines.Write(p)
}

func (l *daemonLog) addLine(line string) {
	if strings.TrimSpace(line) == "" {
		return
	}
	if l.forward {
		l.logger.Debugf("buildkitd: %s", line)
	}
	if strings.HasPrefix(line, "\t") {
		// A Go stack frame: drop it and the function line before it, so
		// the tail shows messages rather than a trace.
		if n := len(l.last); n > 0 && !strings.Contains(l.last[n-1], " ") {
			l.last = l.last[:n-1]
		}
		return
	}
	l.last = append(l.last, line)
	if len(l.last) > daemonLogTailLines {
		l.last = l.last[len(l.last)-daemonLogTailLines:]
	}
}

// tail returns the last lines joined on one line (errors stay one line).
func (l *daemonLog) tail() string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := append(append([]string(nil), l.last...), l.lines.Partial())
	return engine.OneLine(strings.Join(lines, "\n"))
}

func (l *daemonLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file == nil {
		return nil
	}
	err := l.file.Close()
	l.file = nil
	return err
}
