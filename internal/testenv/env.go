package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
)

// CacheEnv overrides where built base images are cached.
const CacheEnv = "KILN_TEST_CACHE"

// RepoRoot returns the directory holding go.mod, found by walking up from the
// working directory (go test runs in the package directory).
func RepoRoot(t testing.TB) string {
	t.Helper()
	return must[string](t)(findRepoRoot())
}

// must returns a function that fails t on a non-nil error and otherwise
// passes the value through: must(t)(f()).
func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		return v
	}
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run from inside the kiln checkout")
		}
		dir = parent
	}
}

// CacheDir returns $KILN_TEST_CACHE, or <repo root>/.cache/testenv, creating it.
func CacheDir(t testing.TB) string {
	t.Helper()
	return must[string](t)(cacheDir())
}

func cacheDir() (string, error) {
	dir := os.Getenv(CacheEnv)
	if dir == "" {
		root, err := findRepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, ".cache", "testenv")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cache dir %s (set %s to a writable dir): %w", dir, CacheEnv, err)
	}
	return dir, nil
}

// lockFile takes an exclusive flock so that test binaries of different
// packages, which go test runs in parallel, build a cache entry only once.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

var unsafeNameChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// tempDirOutsideT makes a directory under os.TempDir() removed at cleanup.
// t.TempDir() lives in a 0700 root-owned parent, which other users (the
// non-root user, daemons running as it) cannot traverse.
func tempDirOutsideT(t testing.TB, mode os.FileMode) string {
	t.Helper()
	prefix := unsafeNameChars.ReplaceAllString(t.Name(), "_")
	dir, err := os.MkdirTemp("", "kiln-"+prefix[:min(len(prefix), 64)]+"-")
	if err != nil {
		t.Fatalf("testenv: temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatalf("testenv: chmod %s: %v", dir, err)
	}
	return dir
}

// ReadableTempDir returns a fresh directory every user can read (mode 0755),
// removed when the test ends. Use it for files a non-root process must read.
func ReadableTempDir(t testing.TB) string {
	t.Helper()
	return tempDirOutsideT(t, 0o755)
}
