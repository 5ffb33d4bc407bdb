package testenv

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// NonRootUserName is the account rootless tests run as.
const NonRootUserName = "kilntest"

// subIDCount is what rootless BuildKit needs: container IDs 0..65536.
const subIDCount = 65536

// User is the non-root test account. Home and RuntimeDir are private to the
// test (0700, owned by the user) so daemons of parallel tests never share
// state; they are removed when the test ends.
type User struct {
	Name       string
	UID, GID   int
	Home       string
	RuntimeDir string // XDG_RUNTIME_DIR
}

// NonRootUser ensures the kilntest account exists with /etc/subuid and
// /etc/subgid ranges of at least 65536 IDs, creating what is missing.
func NonRootUser(t testing.TB) User {
	t.Helper()
	RequireRoot(t)
	RequireCommands(t, "useradd", "usermod", "newuidmap", "newgidmap")
	uid, gid, err := ensureUser(NonRootUserName)
	if err != nil {
		t.Fatalf("testenv: setting up user %s: %v", NonRootUserName, err)
	}
	u := User{Name: NonRootUserName, UID: uid, GID: gid}
	u.Home = SharedTempDir(t, u)
	u.RuntimeDir = SharedTempDir(t, u)
	for _, dir := range []string{u.Home, u.RuntimeDir} {
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	return u
}

func ensureUser(name string) (uid, gid int, err error) {
	cache, err := cacheDir()
	if err != nil {
		return 0, 0, err
	}
	unlock, err := lockFile(filepath.Join(cache, "user.lock"))
	if err != nil {
		return 0, 0, err
	}
	defer unlock()

	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("useradd: %v: %s", err, out)
		}
	}
	account, err := user.Lookup(name)
	if err != nil {
		return 0, 0, err
	}
	for _, kind := range []struct{ file, flag string }{{"/etc/subuid", "--add-subuids"}, {"/etc/subgid", "--add-subgids"}} {
		if err := ensureSubIDs(kind.file, kind.flag, name, account.Uid); err != nil {
			return 0, 0, err
		}
	}
	uid, _ = strconv.Atoi(account.Uid)
	gid, _ = strconv.Atoi(account.Gid)
	return uid, gid, nil
}

// SubIDRange is one line of /etc/subuid or /etc/subgid.
type SubIDRange struct{ Start, Count int }

// SubIDs returns the ranges file (/etc/subuid or /etc/subgid) grants to the
// user, whether listed by name or by numeric ID.
func SubIDs(file string, u User) ([]SubIDRange, error) {
	all, err := readSubIDs(file)
	if err != nil {
		return nil, err
	}
	var mine []SubIDRange
	for _, l := range all {
		if l.owner == u.Name || l.owner == strconv.Itoa(u.UID) {
			mine = append(mine, l.SubIDRange)
		}
	}
	return mine, nil
}

type subIDLine struct {
	owner string
	SubIDRange
}

func readSubIDs(file string) ([]subIDLine, error) {
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []subIDLine
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		fields := strings.Split(strings.TrimSpace(scanner.Text()), ":")
		if len(fields) != 3 {
			continue
		}
		start, err1 := strconv.Atoi(fields[1])
		count, err2 := strconv.Atoi(fields[2])
		if err1 == nil && err2 == nil {
			lines = append(lines, subIDLine{fields[0], SubIDRange{start, count}})
		}
	}
	return lines, scanner.Err()
}

func ensureSubIDs(file, flag, name, uid string) error {
	lines, err := readSubIDs(file)
	if err != nil {
		return err
	}
	next := 100000
	for _, l := range lines {
		if (l.owner == name || l.owner == uid) && l.Count >= subIDCount {
			return nil
		}
		next = max(next, l.Start+l.Count)
	}
	idRange := fmt.Sprintf("%d-%d", next, next+subIDCount-1)
	if out, err := exec.Command("usermod", flag, idRange, name).CombinedOutput(); err != nil {
		return fmt.Errorf("usermod %s %s: %v: %s", flag, idRange, err, out)
	}
	return nil
}

// Command runs name as the user: uid/gid set, supplementary groups cleared,
// and HOME, USER, LOGNAME, XDG_RUNTIME_DIR pointing at the user's private
// dirs. Append to cmd.Env to add variables.
func (u User) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = u.Home
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: []uint32{}},
	}
	cmd.Env = []string{
		"PATH=" + cmp.Or(os.Getenv("PATH"), defaultPath),
		"HOME=" + u.Home,
		"USER=" + u.Name,
		"LOGNAME=" + u.Name,
		"XDG_RUNTIME_DIR=" + u.RuntimeDir,
	}
	return cmd
}

// SharedTempDir returns a fresh directory owned by the user (mode 0755)
// outside t.TempDir()'s root-only parent, removed when the test ends.
func SharedTempDir(t testing.TB, u User) string {
	t.Helper()
	dir := tempDirOutsideT(t, 0o755)
	if err := os.Chown(dir, u.UID, u.GID); err != nil {
		t.Fatalf("testenv: chown %s to %s: %v", dir, u.Name, err)
	}
	return dir
}
