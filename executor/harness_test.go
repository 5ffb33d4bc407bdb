package executor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/internal/testenv"
	"github.com/moby/buildkit/client"
	"github.com/sirupsen/logrus"
)

// The rootless half of each test re-executes this test binary as the
// non-root test user; these variables carry what the child needs.
const (
	childEnv       = "KILN_EXECUTOR_TEST_CHILD"
	stateParentEnv = "KILN_EXECUTOR_TEST_STATE_PARENT"
	binDirEnv      = "KILN_EXECUTOR_TEST_BIN_DIR"
	testUser       = "kilntest"
)

// fakeExecutorEnv makes the test binary act as an executor that starts a daemon,
// prints "READY" and waits to be killed.
const fakeExecutorEnv = "KILN_EXECUTOR_TEST_FAKE_EXECUTOR"

func TestMain(m *testing.M) {
	if os.Getenv(fakeExecutorEnv) == "" {
		os.Exit(m.Run())
	}
	// The daemon is deliberately never closed: the test kills this process.
	if _, err := StartDaemon(context.Background(), engine.Config{
		StateParent: os.Getenv(stateParentEnv),
		BinDir:      os.Getenv(binDirEnv),
	}); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("READY\n")
	select {}
}

// modeEnv is what one daemon mode's test body gets.
type modeEnv struct {
	StateParent string
	BinDir      string
	Rootless    bool
}

func (e modeEnv) daemonConfig() engine.Config {
	return engine.Config{StateParent: e.StateParent, BinDir: e.BinDir, ReadyTimeout: 60 * time.Second}
}

// forEachMode runs body as root against a rootful daemon and as the test
// user against a rootless one.
func forEachMode(t *testing.T, body func(t *testing.T, env modeEnv)) {
	t.Helper()
	if os.Getenv(childEnv) != "" {
		t.Run("rootless", func(t *testing.T) {
			body(t, modeEnv{StateParent: os.Getenv(stateParentEnv), BinDir: os.Getenv(binDirEnv), Rootless: true})
		})
		return
	}
	t.Run("rootful", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Fatalf("the rootful daemon test needs root: run go test as root (the rootless half then re-executes as %s)", testUser)
		}
		body(t, modeEnv{StateParent: t.TempDir(), BinDir: binDir(t)})
	})
	t.Run("rootless", func(t *testing.T) {
		if os.Geteuid() != 0 {
			body(t, modeEnv{StateParent: t.TempDir(), BinDir: binDir(t), Rootless: true})
			return
		}
		runAsTestUser(t)
	})
}

// binDir is <repo>/bin holding buildkitd, rootlesskit and kiln-runc.
func binDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(binDirEnv)
	if dir == "" {
		dir = filepath.Join(testenv.RepoRoot(t), "bin")
	}
	for _, name := range []string{"buildkitd", "rootlesskit", "kiln-runc"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("%s missing in %s: run make build first", name, dir)
		}
	}
	return dir
}

// runAsTestUser re-executes the current (sub)test as the test user and
// checks that its daemon left no process and no state behind.
func runAsTestUser(t *testing.T) {
	t.Helper()
	u, err := user.Lookup(testUser)
	if err != nil {
		t.Fatalf("rootless tests need the user %s with /etc/subuid and /etc/subgid ranges (hack/install-deps.sh creates it): %v", testUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// go test's build dir is private to root: copy the binary out.
	exe := filepath.Join(testenv.ReadableTempDir(t), "executor.test")
	copyFile(t, self, exe, 0o755)
	home := ownedTempDir(t, uid, gid)
	stateParent := ownedTempDir(t, uid, gid)

	cmd := exec.Command(exe, "-test.run="+exactRunPattern(t.Name()), "-test.v", "-test.count=1", "-test.timeout=10m")
	cmd.Dir = home
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"USER=" + testUser,
		"TMPDIR=" + home,
		childEnv + "=1",
		stateParentEnv + "=" + stateParent,
		binDirEnv + "=" + binDir(t),
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("test as %s failed: %v\n%s", testUser, err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("test as %s did not run %s:\n%s", testUser, t.Name(), out)
	}
	t.Logf("as %s:\n%s", testUser, out)
	assertNothingLeft(t, stateParent)
}

// exactRunPattern turns "TestA/b" into a -test.run pattern matching only it.
func exactRunPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

func ownedTempDir(t *testing.T, uid, gid int) string {
	t.Helper()
	dir := testenv.ReadableTempDir(t)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// processesMentioning lists running processes whose command line contains s.
func processesMentioning(s string) []string {
	var found []string
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmdline, s) {
			found = append(found, filepath.Base(filepath.Dir(f))+": "+cmdline)
		}
	}
	return found
}

// mountsMentioning lists this mount namespace's mounts whose line contains s.
func mountsMentioning(t *testing.T, s string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatalf("reading mountinfo: %v", err)
	}
	var found []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, s) {
			found = append(found, line)
		}
	}
	return found
}

// assertNothingLeft fails if a process, mount or file of a daemon whose
// state lived under stateParent remains.
func assertNothingLeft(t *testing.T, stateParent string) {
	t.Helper()
	if procs := processesMentioning(stateParent); len(procs) > 0 {
		t.Errorf("processes left running:\n%s", strings.Join(procs, "\n"))
	}
	if mounts := mountsMentioning(t, stateParent); len(mounts) > 0 {
		t.Errorf("mounts left:\n%s", strings.Join(mounts, "\n"))
	}
	entries, err := os.ReadDir(stateParent)
	if err != nil {
		t.Errorf("reading %s: %v", stateParent, err)
	}
	for _, e := range entries {
		t.Errorf("state left in %s: %s", stateParent, e.Name())
	}
}

// startTestDaemon starts a daemon closed (and checked) when the test ends.
func startTestDaemon(t *testing.T, cfg engine.Config) (engine.Daemon, *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := StartDaemon(ctx, cfg)
	if err != nil {
		t.Fatalf("StartDaemon: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertNothingLeft(t, cfg.StateParent)
	})
	c, err := d.Client(ctx)
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	return d, c
}

// startDaemonWithBusybox starts a test daemon that pulls from a fresh local
// registry holding the test busybox image, and returns that image's ref.
func startDaemonWithBusybox(t *testing.T, env modeEnv) (engine.Config, string, *client.Client) {
	t.Helper()
	reg := testenv.StartRegistry(t)
	base := testenv.PushBase(t, reg, "library/busybox:latest", testenv.BusyboxImage(t))
	cfg := env.daemonConfig()
	cfg.RegistryConfigTOML = fmt.Sprintf("[registry.%q]\n  http = true\n", reg.Host)
	_, c := startTestDaemon(t, cfg)
	return cfg, base, c
}

// buildDockerfile solves a context holding only dockerfile and returns the
// image's files (see filesIn) and the build's log.
func buildDockerfile(t *testing.T, c *client.Client, dockerfile string) (map[string]string, string) {
	t.Helper()
	dir := writeContext(t, map[string]string{"Dockerfile": dockerfile})
	var logs bytes.Buffer
	res := solveOrFail(t, c, SolveRequest{
		ContextDir:     dir,
		DockerfilePath: filepath.Join(dir, "Dockerfile"),
		HostNetwork:    true,
		OutputDir:      filepath.Join(t.TempDir(), "layout"),
		Progress:       ProgressOptions{Logger: testLogger(&logs), Stdout: &logs, Stderr: &logs},
	}, &logs)
	return filesIn(t, layoutImage(t, res)), logs.String()
}

// testLogger captures Kaniko-style log lines.
func testLogger(w io.Writer) *logrus.Logger {
	l := logrus.New()
	l.Out = w
	l.Formatter = &logrus.TextFormatter{DisableColors: true, DisableTimestamp: true}
	return l
}

// syncBuffer is a bytes.Buffer safe to read while another goroutine logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
