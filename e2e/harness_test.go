// Package e2e runs the real bin/executor (make build) as a Kaniko job would,
// as root and as a non-root user through rootlesskit, against real
// registries, and checks images, output files, exit codes and that nothing
// is left running or mounted afterwards. It needs root, user namespaces and
// a Docker engine; each missing piece fails the test naming the fix.
package e2e

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// buildTimeout bounds one executor run; a healthy build here takes seconds.
const buildTimeout = 3 * time.Minute

// mode is who runs the executor: root (a rootful private daemon) or the
// non-root test user (rootless BuildKit under rootlesskit).
type mode struct {
	name     string
	rootless bool
	user     testenv.User
	stdin    io.Reader // the executor's standard input; nil is /dev/null
}

// forEachMode runs body as subtests "root" and "rootless", in parallel.
func forEachMode(t *testing.T, body func(t *testing.T, m mode)) {
	t.Helper()
	for _, name := range []string{"root", "rootless"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testenv.RequireRoot(t)
			m := mode{name: name}
			if name == "rootless" {
				testenv.RequireUserNamespaces(t)
				m.rootless, m.user = true, testenv.NonRootUser(t)
			}
			body(t, m)
		})
	}
}

// dir returns a fresh directory the executor can write to in this mode.
func (m mode) dir(t *testing.T) string {
	t.Helper()
	if m.rootless {
		return testenv.SharedTempDir(t, m.user)
	}
	return testenv.ReadableTempDir(t)
}

// stateDir returns a fresh, short directory (unix socket paths are limited)
// that becomes the executor's XDG_RUNTIME_DIR and TMPDIR: every private
// daemon, socket and work dir of the run lives under it, which is how the
// leak checks tell this run's processes from those of parallel tests.
func (m mode) stateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kiln-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if m.rootless {
		if err := os.Chown(dir, m.user.UID, m.user.GID); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// execution is one running executor process.
type execution struct {
	cmd      *exec.Cmd
	state    string
	outDir   string // holds the stdout and stderr files
	watcher  *processWatcher
	started  time.Time
	finished chan struct{}
	waitErr  error
	cancel   context.CancelFunc
}

// result is what a finished executor run left behind.
type result struct {
	code           int
	state          string
	stdout, stderr string
	elapsed        time.Duration
	seen           []process // processes that ran with the state dir in their command line
}

// start runs bin/executor with args in this mode. env adds KEY=VALUE
// entries; state is the run's state dir (see stateDir).
func (m mode) start(t *testing.T, state string, args []string, env ...string) *execution {
	t.Helper()
	bins := testenv.Binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	var cmd *exec.Cmd
	if m.rootless {
		cmd = m.user.Command(ctx, bins.Executor, args...)
	} else {
		cmd = exec.CommandContext(ctx, bins.Executor, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + state}
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.Dir = state
	cmd.Stdin = m.stdin
	cmd.Env = append(cmd.Env, "XDG_RUNTIME_DIR="+state, "TMPDIR="+state)
	cmd.Env = append(cmd.Env, env...)
	// The executor is PID 1's stand-in: only it gets signals, and it dies
	// with the test.
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	e := &execution{cmd: cmd, state: state, outDir: t.TempDir(), finished: make(chan struct{}), cancel: cancel}
	// Files rather than pipes: the test reads them while the process runs.
	var err error
	if cmd.Stdout, err = os.Create(filepath.Join(e.outDir, "stdout")); err != nil {
		t.Fatal(err)
	}
	if cmd.Stderr, err = os.Create(filepath.Join(e.outDir, "stderr")); err != nil {
		t.Fatal(err)
	}
	cmd.WaitDelay = 5 * time.Second
	t.Logf("%s: executor %s", m.name, strings.Join(args, " "))
	e.started = time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", bins.Executor, err)
	}
	e.watcher = watchProcesses(state, cmd.Process.Pid)
	go func() {
		e.waitErr = cmd.Wait()
		cmd.Stdout.(*os.File).Close()
		cmd.Stderr.(*os.File).Close()
		close(e.finished)
	}()
	t.Cleanup(func() {
		cancel()
		<-e.finished
	})
	return e
}

// wait waits for the executor to exit, then checks that nothing of the run
// is left: no process, no mount, no private state.
func (e *execution) wait(t *testing.T) result {
	t.Helper()
	r := e.waitSharingState(t)
	assertNothingLeft(t, e.state)
	return r
}

// waitSharingState waits for the executor to exit without the leftover
// checks: other builds still use its state dir.
func (e *execution) waitSharingState(t *testing.T) result {
	t.Helper()
	r := e.finish(t)
	if e.waitErr != nil && r.code < 0 {
		t.Fatalf("executor did not exit normally: %v\nstderr:\n%s", e.waitErr, r.stderr)
	}
	return r
}

// finish waits for the executor to exit, however it ends.
func (e *execution) finish(t *testing.T) result {
	t.Helper()
	<-e.finished
	e.cancel()
	r := result{state: e.state, elapsed: time.Since(e.started), seen: e.watcher.stop()}
	r.stdout, r.stderr = e.output(t)
	r.code = e.cmd.ProcessState.ExitCode()
	t.Logf("exit %d after %s; stderr:\n%s", r.code, r.elapsed.Round(time.Millisecond), r.stderr)
	return r
}

// output returns what the executor wrote so far to stdout and stderr.
func (e *execution) output(t *testing.T) (stdout, stderr string) {
	t.Helper()
	out, err := os.ReadFile(filepath.Join(e.outDir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	errOut, err := os.ReadFile(filepath.Join(e.outDir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	return string(out), string(errOut)
}

// run starts the executor and waits for it.
func (m mode) run(t *testing.T, state string, args []string, env ...string) result {
	t.Helper()
	return m.start(t, state, args, env...).wait(t)
}

// mustSucceed fails the test unless the run exited 0.
func (r result) mustSucceed(t *testing.T) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("executor exited %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
}

// lastLine is the last non-empty line of stderr.
func (r result) lastLine() string {
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	return lines[len(lines)-1]
}

// assertOneLineFailure checks a failed run the way a CI log reader sees it:
// exit 1, the error on stderr's last line containing want and naming none
// of the executor's private paths, no Go trace.
func (r result) assertOneLineFailure(t *testing.T, want string) {
	t.Helper()
	if r.code != 1 {
		t.Errorf("exit code %d, want 1", r.code)
	}
	last := r.lastLine()
	if !strings.HasPrefix(last, "Error: ") || !strings.Contains(last, want) {
		t.Errorf("last stderr line %q: want an `Error: ` line containing %q", last, want)
	}
	if strings.Contains(last, r.state+"/") {
		t.Errorf("the error names a private path of the executor: %q", last)
	}
	for _, trace := range []string{"goroutine ", "panic:", ".go:"} {
		if strings.Contains(r.stderr, trace) {
			t.Errorf("stderr contains Go trace text %q", trace)
		}
	}
}

// assertDaemons checks which BuildKit processes the run started: as root a
// rootful buildkitd, rootless buildkitd under rootlesskit running as the
// user, and nothing at all with a remote daemon.
func (r result) assertDaemons(t *testing.T, m mode, remote bool) {
	t.Helper()
	var names []string
	for _, p := range r.seen {
		names = append(names, p.name)
		if m.rootless && p.uid != m.user.UID {
			t.Errorf("rootless run started %s (pid %d) as uid %d, want the user's %d", p.name, p.pid, p.uid, m.user.UID)
		}
	}
	t.Logf("processes started under the state dir: %v", r.seen)
	switch {
	case remote:
		if len(r.seen) > 0 {
			t.Errorf("with --buildkit-host the executor started local processes: %v", r.seen)
		}
	case m.rootless:
		if !slices.Contains(names, "rootlesskit") || !slices.Contains(names, "buildkitd") {
			t.Errorf("rootless run: want rootlesskit and buildkitd started, saw %v", names)
		}
	default:
		if !slices.Contains(names, "buildkitd") || slices.Contains(names, "rootlesskit") {
			t.Errorf("root run: want buildkitd without rootlesskit, saw %v", names)
		}
		for _, p := range r.seen {
			if p.name == "buildkitd" && p.uid != 0 {
				t.Errorf("root run: buildkitd runs as uid %d", p.uid)
			}
		}
	}
}

// assertNothingLeft fails when a process or mount of the run remains, or
// the executor left its private directories in the state dir.
func assertNothingLeft(t *testing.T, state string) {
	t.Helper()
	testenv.WaitForRemovers(t, state+"/")
	if procs := processesMentioning(state+"/", 0); len(procs) > 0 {
		t.Errorf("processes left running after the executor exited: %v", procs)
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatalf("reading mountinfo: %v", err)
	}
	for line := range strings.SplitSeq(string(mountinfo), "\n") {
		if strings.Contains(line, state+"/") {
			t.Errorf("mount left after the executor exited: %s", line)
		}
	}
	entries, err := os.ReadDir(state)
	if err != nil {
		t.Fatalf("reading %s: %v", state, err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "kiln-") {
			t.Errorf("private state left in %s: %s", state, e.Name())
		}
	}
}

// process is one process whose command line named the state dir.
type process struct {
	pid  int
	name string // base name of argv[0]
	uid  int    // real uid as this (the host's) namespace sees it
}

// processesMentioning lists processes other than except whose command line
// contains s.
func processesMentioning(s string, except int) []process {
	var found []process
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		b, err := os.ReadFile(f)
		if pid == except || err != nil || !bytes.Contains(b, []byte(s)) {
			continue
		}
		argv0, _, _ := bytes.Cut(b, []byte{0})
		found = append(found, process{pid: pid, name: filepath.Base(string(argv0)), uid: realUID(pid)})
	}
	return found
}

func realUID(pid int) int {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if fields := strings.Fields(line); len(fields) > 1 && fields[0] == "Uid:" {
			uid, _ := strconv.Atoi(fields[1])
			return uid
		}
	}
	return -1
}

// processWatcher samples /proc while the executor runs, recording every
// process whose command line names the state dir.
type processWatcher struct {
	done chan struct{}
	wg   sync.WaitGroup
	seen map[int]process
}

func watchProcesses(state string, executorPID int) *processWatcher {
	w := &processWatcher{done: make(chan struct{}), seen: map[int]process{}}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		ticker := time.NewTicker(20 * time.Millisecond)
		defer ticker.Stop()
		for {
			for _, p := range processesMentioning(state+"/", executorPID) {
				// Removing private dirs after the build is no part of it
				// (assertNothingLeft waits for it).
				if p.name == testenv.RemoverName {
					continue
				}
				if _, ok := w.seen[p.pid]; !ok {
					w.seen[p.pid] = p
				}
			}
			select {
			case <-w.done:
				return
			case <-ticker.C:
			}
		}
	}()
	return w
}

func (w *processWatcher) stop() []process {
	close(w.done)
	w.wg.Wait()
	var all []process
	for _, p := range w.seen {
		all = append(all, p)
	}
	return all
}

// buildContext copies testdata/<name> into a directory every user can read
// and returns it. Files keep their modes; .mode files are not used.
func buildContext(t *testing.T, name string) string {
	t.Helper()
	dst := filepath.Join(testenv.ReadableTempDir(t), name)
	src := filepath.Join("testdata", name)
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		return copyFile(path, target, info.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("copying build context %s: %v", name, err)
	}
	return dst
}

// writeContext makes a build context holding one Dockerfile.
func writeContext(t *testing.T, dockerfile string) string {
	t.Helper()
	dir := testenv.ReadableTempDir(t)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyFile(from, to string, mode os.FileMode) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return os.Chmod(to, mode) // umask may have narrowed it
}
