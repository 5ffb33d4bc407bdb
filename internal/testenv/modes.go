package testenv

import (
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The rootless half of a ForEachMode test re-executes the test binary as
// the non-root user; these variables carry what the child needs.
const (
	childEnv       = "KILN_EXECUTOR_TEST_CHILD"
	stateParentEnv = "KILN_EXECUTOR_TEST_STATE_PARENT"
	binDirEnv      = "KILN_EXECUTOR_TEST_BIN_DIR"
)

// ModeEnv is what one private daemon mode's test body gets.
type ModeEnv struct {
	StateParent string // empty, owned by the user the body runs as
	BinDir      string // holds buildkitd, rootlesskit and kiln-runc
	Rootless    bool
}

// ForEachMode runs body as root against a rootful daemon and as the
// non-root user against a rootless one: as root the rootless half runs the
// (sub)test again in a copy of the test binary as that user and checks it
// left nothing behind.
func ForEachMode(t *testing.T, body func(t *testing.T, env ModeEnv)) {
	t.Helper()
	if os.Getenv(childEnv) != "" {
		t.Run("rootless", func(t *testing.T) {
			body(t, ModeEnv{StateParent: os.Getenv(stateParentEnv), BinDir: os.Getenv(binDirEnv), Rootless: true})
		})
		return
	}
	t.Run("rootful", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Fatalf("the rootful daemon test needs root: run go test as root (the rootless half then re-executes as %s)", NonRootUserName)
		}
		body(t, ModeEnv{StateParent: t.TempDir(), BinDir: daemonBinDir(t)})
	})
	t.Run("rootless", func(t *testing.T) {
		if os.Geteuid() != 0 {
			body(t, ModeEnv{StateParent: t.TempDir(), BinDir: daemonBinDir(t), Rootless: true})
			return
		}
		runAsNonRootUser(t)
	})
}

// daemonBinDir is <repo>/bin holding buildkitd, rootlesskit and kiln-runc.
func daemonBinDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(binDirEnv)
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), "bin")
	}
	for _, name := range []string{"buildkitd", "rootlesskit", "kiln-runc"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("%s missing in %s: run make build first", name, dir)
		}
	}
	return dir
}

// runAsNonRootUser re-executes the current (sub)test as the non-root user
// and checks that its daemon left no process and no state behind.
func runAsNonRootUser(t *testing.T) {
	t.Helper()
	account, err := user.Lookup(NonRootUserName)
	if err != nil {
		t.Fatalf("rootless tests need the user %s with /etc/subuid and /etc/subgid ranges (hack/install-deps.sh creates it): %v", NonRootUserName, err)
	}
	u := User{Name: NonRootUserName}
	u.UID, _ = strconv.Atoi(account.Uid)
	u.GID, _ = strconv.Atoi(account.Gid)

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// go test's build dir is private to root: copy the binary out.
	exe := filepath.Join(ReadableTempDir(t), filepath.Base(self))
	copyExecutable(t, self, exe)
	home := SharedTempDir(t, u)
	stateParent := SharedTempDir(t, u)

	cmd := exec.Command(exe, "-test.run="+exactRunPattern(t.Name()), "-test.v", "-test.count=1", "-test.timeout=10m")
	cmd.Dir = home
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"USER=" + u.Name,
		"TMPDIR=" + home,
		childEnv + "=1",
		stateParentEnv + "=" + stateParent,
		binDirEnv + "=" + daemonBinDir(t),
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("test as %s failed: %v\n%s", u.Name, err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("test as %s did not run %s:\n%s", u.Name, t.Name(), out)
	}
	t.Logf("as %s:\n%s", u.Name, out)
	AssertNothingLeft(t, stateParent)
}

// exactRunPattern turns "TestA/b" into a -test.run pattern matching only it.
func exactRunPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
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

// ProcessesMentioning lists running processes whose command line contains s.
func ProcessesMentioning(s string) []string {
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

// MountsMentioning lists this mount namespace's mounts whose line contains s.
func MountsMentioning(t *testing.T, s string) []string {
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

// RemoverName is the name of the process a build leaves its private dirs
// to (executor/helper.RemoveAfterExit).
const RemoverName = "kiln-remover"

// AwaitRemovers waits up to limit until no remover names s on its command
// line (the private dirs it removes are gone then, or it failed) and
// returns the ones still running.
func AwaitRemovers(s string, limit time.Duration) []string {
	deadline := time.Now().Add(limit)
	for {
		var removers []string
		for _, p := range ProcessesMentioning(s) {
			if strings.Contains(p, RemoverName) {
				removers = append(removers, p)
			}
		}
		if len(removers) == 0 || time.Now().After(deadline) {
			return removers
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitForRemovers is AwaitRemovers for two minutes, failing t after them.
func WaitForRemovers(t testing.TB, s string) {
	t.Helper()
	if still := AwaitRemovers(s, 2*time.Minute); len(still) > 0 {
		t.Fatalf("removers still running after two minutes:\n%s", strings.Join(still, "\n"))
	}
}

// AssertNothingLeft fails if a process, mount or file of a daemon whose
// state lived under stateParent remains once its removers are done.
func AssertNothingLeft(t *testing.T, stateParent string) {
	t.Helper()
	WaitForRemovers(t, stateParent)
	if procs := ProcessesMentioning(stateParent); len(procs) > 0 {
		t.Errorf("processes left running:\n%s", strings.Join(procs, "\n"))
	}
	if mounts := MountsMentioning(t, stateParent); len(mounts) > 0 {
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
