package helper

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

	"golang.org/x/sys/unix"
)

// The reaper stands between the executor and its private daemon so that
// nothing the build started outlives the executor, however it dies. It is
// kiln-helper run under this name (see command); it is a child
// subreaper, so RUN processes orphaned when runc dies are re-parented to it
// rather than to init, and it learns of the executor's death through its
// parent-death signal, which even a SIGKILL of the executor triggers. Then
// it kills every process below it and removes the build's private
// directories.
const ReaperName = "kiln-reaper"

func init() { runAs(ReaperName, runReaper) }

// ReaperConfig is what the reaper needs to clean up after a dead executor.
type ReaperConfig struct {
	StateDir      string   // the daemon's private state dir
	SockDir       string   // its short socket dir, or ""
	BinDir        string   // where rootlesskit is (rootless removal)
	Rootless      bool     // the state holds subordinate-ID files
	PrivateMounts bool     // run the daemon in its own mount namespace
	RemoveOnCrash []string // more private dirs of the build
	ExecutorPID   int      // the executor that started the reaper
}

// Command runs the daemon argv under the reaper, kiln-helper found as
// FindBinary finds it in binDir.
func (c ReaperConfig) Command(binDir string, daemonArgv []string) (*exec.Cmd, error) {
	args := []string{
		"--state-dir=" + c.StateDir,
		"--sock-dir=" + c.SockDir,
		"--bin-dir=" + c.BinDir,
		"--rootless=" + strconv.FormatBool(c.Rootless),
		"--private-mounts=" + strconv.FormatBool(c.PrivateMounts),
		"--executor-pid=" + strconv.Itoa(c.ExecutorPID),
	}
	for _, dir := range c.RemoveOnCrash {
		args = append(args, "--remove-on-crash="+dir)
	}
	return command(binDir, ReaperName, append(append(args, "--"), daemonArgv...))
}

func parseReaperArgs(args []string) (ReaperConfig, []string, error) {
	var c ReaperConfig
	fs := flag.NewFlagSet(ReaperName, flag.ContinueOnError)
	fs.StringVar(&c.StateDir, "state-dir", "", "")
	fs.StringVar(&c.SockDir, "sock-dir", "", "")
	fs.StringVar(&c.BinDir, "bin-dir", "", "")
	fs.BoolVar(&c.Rootless, "rootless", false, "")
	fs.BoolVar(&c.PrivateMounts, "private-mounts", false, "")
	fs.IntVar(&c.ExecutorPID, "executor-pid", 0, "")
	fs.Func("remove-on-crash", "", func(dir string) error {
		c.RemoveOnCrash = append(c.RemoveOnCrash, dir)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return c, nil, err
	}
	if fs.NArg() == 0 || c.StateDir == "" {
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
	executor := cfg.ExecutorPID
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGPIPE)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "%s: becoming a subreaper: %v\n", ReaperName, err)
		return 1
	}
	if os.Getppid() != executor {
		cfg.cleanUp()
		return 1
	}
	daemon := exec.Command(argv[0], argv[1:]...)
	daemon.Stdin, daemon.Stdout, daemon.Stderr = os.Stdin, os.Stdout, os.Stderr
	daemon.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if cfg.PrivateMounts {
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
func (c ReaperConfig) cleanUp() {
	_ = RemovePrivateDir(c.StateDir, c.Rootless, c.BinDir)
	if c.SockDir != "" {
		_ = RemovePrivateDir(c.SockDir, false, c.BinDir)
	}
	for _, dir := range c.RemoveOnCrash {
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
		state, ppid, _, ok := ProcStat(b)
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

// ProcStat parses /proc/<pid>/stat: "pid (comm) state ppid pgrp ...",
// where comm may hold spaces and ')'.
func ProcStat(stat []byte) (state byte, ppid, pgrp int, ok bool) {
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
