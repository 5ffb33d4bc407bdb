package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// RequireRoot fails the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("testenv: this test needs root (euid is %d): run the suite as root, e.g. `sudo make test`", os.Geteuid())
	}
}

// RequireCommands fails the test naming every command missing from PATH.
func RequireCommands(t testing.TB, names ...string) {
	t.Helper()
	var missing []string
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("testenv: missing commands %s: run hack/install-deps.sh as root", strings.Join(missing, ", "))
	}
}

// RequireDocker fails the test unless a Docker engine answers.
func RequireDocker(t testing.TB) {
	t.Helper()
	RequireCommands(t, "docker")
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		t.Fatalf("testenv: this test needs a running Docker engine: docker version: %v: %s", err, strings.TrimSpace(string(out)))
	}
}

// RequireUserNamespaces fails the test unless unprivileged users can create
// user namespaces, which rootless BuildKit needs.
func RequireUserNamespaces(t testing.TB) {
	t.Helper()
	RequireCommands(t, "newuidmap", "newgidmap")
	checks := []struct {
		file string
		ok   func(int) bool
		fix  string
	}{
		{"/proc/sys/user/max_user_namespaces", func(n int) bool { return n > 0 }, "sysctl -w user.max_user_namespaces=63359"},
		{"/proc/sys/kernel/unprivileged_userns_clone", func(n int) bool { return n == 1 }, "sysctl -w kernel.unprivileged_userns_clone=1"},
		{"/proc/sys/kernel/apparmor_restrict_unprivileged_userns", func(n int) bool { return n == 0 }, "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"},
	}
	for _, c := range checks {
		data, err := os.ReadFile(c.file)
		if os.IsNotExist(err) {
			continue // knob absent on this kernel: nothing restricts
		}
		n, convErr := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || convErr != nil || !c.ok(n) {
			t.Fatalf("testenv: user namespaces are restricted (%s = %q): run `%s`", c.file, strings.TrimSpace(string(data)), c.fix)
		}
	}
}

// LoadImage docker-loads out/<tarball> (made by `make image`) and returns
// the image's name.
func LoadImage(t testing.TB, tarball string) string {
	t.Helper()
	RequireDocker(t)
	path := filepath.Join(RepoRoot(t), "out", tarball)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("testenv: %s is missing: run `sudo make image` first", path)
	}
	out, err := exec.Command("docker", "load", "-i", path).CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: docker load %s: %v\n%s", path, err, out)
	}
	m := regexp.MustCompile(`Loaded image: (\S+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("testenv: docker load %s printed no image name:\n%s", path, out)
	}
	return m[1]
}
