package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// OldestBuildkitVersion is the oldest BuildKit release kiln supports as a
// remote daemon; buildkit-oldest/go.mod pins it (executor/remote.OldestBuildKit is
// its minor line).
const OldestBuildkitVersion = "v0.26.3"

// OldestBuildkitd returns a buildkitd of OldestBuildkitVersion, built once
// from its module (the separate module in buildkit-oldest, so its
// dependency graph never touches kiln's) and cached between runs. The
// version is stamped in, so the daemon reports it as a release does.
func OldestBuildkitd(t testing.TB) string {
	t.Helper()
	return must[string](t)(ensureBuildkitd(filepath.Join(RepoRoot(t), "internal", "testenv", "buildkit-oldest"), OldestBuildkitVersion))
}

func ensureBuildkitd(module, version string) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "kiln-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "buildkitd-"+version)
	// Parallel test processes build it once.
	lock, err := os.OpenFile(bin+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	if info, err := os.Stat(bin); err == nil && info.Mode().IsRegular() {
		return bin, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/moby/buildkit/version.Version="+version,
		"-o", tmp, "github.com/moby/buildkit/cmd/buildkitd")
	cmd.Dir = module
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("building buildkitd %s: %w\n%s", version, err, lastLines(string(out), 20))
	}
	return bin, os.Rename(tmp, bin)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
