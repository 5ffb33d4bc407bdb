package local

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kilnbuild/kiln/executor/engine"
	"golang.org/x/sys/unix"
)

// The reaper stands between the executor and its private daemon so that
// nothing the build started outlives the executor, however it dies. It is
// the executor binary re-executed under this name; it is a child
// subreaper, so RUN processes orphaned when runc dies are re-parented to it
// rather than to init, and it learns of the executor's death through its
// parent-death signal, which even a SIGKILL of the executor triggers. Then
// it kills every process below it and removes the build's private
// directories.
const reaperName = "kiln-reaper"

func init() { engine.RunAs(reaperName, runReaper) }

// reaperConfig is what the reaper needs to clean up after a dead executor.
type reaperConfig struct {
	stateDir      string   // the daemon's private state dir
	sockDir       string   // its short socket dir, or ""
	binDir        string   // where rootlesskit is (rootless removal)
	rootless      bool     // the state holds subordinate-ID files
	privateMounts bool     // run the daemon in its own mount namespace
	removeOnCrash []string // more private dirs of the build
	executorPID   int      // the executor that started the reaper
}

func (c reaperConfig) args(daemonArgv []string) []string {
	args := []string{
		"--state-dir=" + c.stateDir,
		"--sock-dir=" + c.sockDir,
		"--bin-dir=" + c.binDir,
		"--rootless=" + strconv.FormatBool(c.rootless),
		"--private-mounts=" + strconv.FormatBool(c.privateMounts),
		"--executor-pid=" + strconv.Itoa(c.executorPID),
	}
	for _, dir := range c.removeOnCrash {
		args = append(args, "--remove-on-crash="+dir)
	}
	return append(append(args, "--"), daemonArgv...)
}

func parseReaperArgs(args []string) (reaperConfig, []string, error) {
	var c reaperConfig
	fs := flag.NewFlagSet(reaperName, flag.ContinueOnError)
	fs.StringVar(&c.stateDir, "state-dir", "", "")
	fs.StringVar(&c.sockDir, "sock-dir", "", "")
	fs.StringVar(&c.binDir, "bin-dir", "", "")
	fs.BoolVar(&c.rootless, "rootless", false, "")
	fs.BoolVar(&c.privateMounts, "private-mounts", false, "")
	fs.IntVar(&c.executorPID, "executor-pid", 0, "")
	fs.Func("remove-on-crash", "", func(dir string) error {
		c.removeOnCrash = append(c.removeOnCrash, dir)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return c, nil, err
	}
	if fs.NArg() == 0 || c.stateDir == "" {
		return c, nil, errors.New("usage: kiln-reaper --state-dir=DIR [...] -- daemon args")
	}
	return c, fs.Args(), nil
}

// runReaper runs the daemon argv and returns its exit code. A SIGTERM or
// SIGINT while the executor lives is passed on (the executor's graceful
// stop); the parent-death signal (SIGTERM too) is told apart by the
// changed parent.
func runReaper(args []string) int {
	// The daemon's parent-death signal fires when the thread that forked
	// it ends; this one never does.
	runtime.LockOSThread()
	cfg, argv, err := parseReaperArgs(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// The lock on the state dir (see engine.NewStateDir) is this process's to
	// hold, not the daemon's.
	for fd := 3; fd < 16; fd++ {
		syscall.CloseOnExec(fd)
	}
	// Told, not guessed from the parent: the executor is PID 1 when it is
	// a container's entrypoint, and a dead executor's child has parent 1.
	executor := cfg.executorPID
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGPIPE)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "%s: becoming a subreaper: %v\n", reaperName, err)
		return 1
	}
	if os.Getppid() != executor {
		cfg.cleanUp()
		return 1
	}
	daemon := exec.Command(argv[0], argv[1:]...)
	daemon.Stdin, daemon.Stdout, daemon.Stderr = os.Stdin, os.Stdout, os.Stderr
	daemon.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if cfg.privateMounts {
		// Snapshot mounts then go with the daemon's last process.
		daemon.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	}
	if err := daemon.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "starting %s: %v\n", argv[0], err)
		return 1
	}
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait() }()
	for {
		select {
		case sig := <-signals:
			if os.Getppid() != executor {
				killDescendants()
				<-exited
				cfg.cleanUp()
				return 1
			}
			if sig != syscall.SIGPIPE {
				_ = daemon.Process.Signal(sig)
			}
		case err := <-exited:
			// What the daemon left (a RUN that forked and exited) goes too.
			killDescendants()
			if os.Getppid() != executor {
				cfg.cleanUp()
			}
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				// A signal's death is passed on as a shell shows it.
				if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return max(exit.ExitCode(), 1)
			}
			if err != nil {
				return 1
			}
			return 0
		}
	}
}

// cleanUp removes what the dead executor would have removed.
func (c reaperConfig) cleanUp() {
	d := &Daemon{dir: c.stateDir, sockDir: c.sockDir, rootless: c.rootless, cfg: engine.Config{BinDir: c.binDir}}
	_ = d.removeState(false)
	for _, dir := range c.removeOnCrash {
		_ = os.RemoveAll(dir)
	}
}

// killDescendants SIGKILLs every process below this one, again and again
// as orphans are re-parented here, and reaps them.
func killDescendants() {
	self := os.Getpid()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		live := descendants(self)
		for _, pid := range live {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
		if len(live) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// descendants lists the live (not zombie) processes below pid.
func descendants(pid int) []int {
	children := map[int][]int{}
	live := map[int]bool{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		state, ppid, _, ok := procStat(b)
		if !ok {
			continue
		}
		p, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		children[ppid] = append(children[ppid], p)
		live[p] = state != 'Z' && state != 'X'
	}
	var found []int
	queue := []int{pid}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		for _, c := range children[next] {
			if live[c] {
				found = append(found, c)
			}
			queue = append(queue, c)
		}
	}
	return found
}

// procStat parses /proc/<pid>/stat: "pid (comm) state ppid pgrp ...",
// where comm may hold spaces and ')'.
func procStat(stat []byte) (state byte, ppid, pgrp int, ok bool) {
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 3 || len(fields[0]) != 1 {
		return 0, 0, 0, false
	}
	ppid, err1 := strconv.Atoi(fields[1])
	pgrp, err2 := strconv.Atoi(fields[2])
	return fields[0][0], ppid, pgrp, err1 == nil && err2 == nil
}

// reaperCommand runs the daemon argv under the reaper. The reaper holds
// the state dir's lock too, so the dir counts as live until it is gone.
func (d *Daemon) reaperCommand(argv []string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the executor binary to run %s: %w", reaperName, err)
	}
	cfg := reaperConfig{
		stateDir:      d.dir,
		sockDir:       d.sockDir,
		rootless:      d.rootless,
		privateMounts: !d.rootless,
		removeOnCrash: d.cfg.CrashDirs,
		executorPID:   os.Getpid(),
	}
	if d.rootless {
		rootlesskit, err := engine.FindBinary(d.cfg.BinDir, "rootlesskit")
		if err != nil {
			return nil, err
		}
		cfg.binDir = filepath.Dir(rootlesskit)
	}
	cmd := exec.Command(self, cfg.args(argv)...)
	cmd.Args[0] = reaperName
	if d.lock != nil {
		cmd.ExtraFiles = []*os.File{d.lock}
	}
	return cmd, nil
}
