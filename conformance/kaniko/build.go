// Package kaniko builds Kaniko's reference executor and runs it on a build
// context inside a private mount and PID namespace, chrooted into a fresh
// directory laid out like Kaniko's official image. Kaniko deletes and rewrites
// files in "/", so it must never run against the host root.
package kaniko

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Version is the Kaniko release the conformance goldens come from.
const Version = "v1.23.2"

// Toolchain is the Go release the official Version images were built with;
// it fixes the compressed layer bytes (compress/flate).
const Toolchain = "go1.22.12"

// DefaultCacheDir is where the built executor is kept between runs.
func DefaultCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "kiln-conformance")
}

// WrapperDir is the module that pins Kaniko for `go build`.
func WrapperDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the kaniko wrapper module: no caller information")
	}
	dir := filepath.Join(filepath.Dir(file), "wrapper")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("kaniko wrapper module not found at %s (run from a source checkout)", dir)
	}
	return dir, nil
}

// EnsureExecutor returns the path of a cached Kaniko executor, building it
// (static, CGO_ENABLED=0) with the go command only when it is missing.
func EnsureExecutor(ctx context.Context, cacheDir string) (string, error) {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	bin := filepath.Join(cacheDir, "kaniko-"+Version, "executor")
	if info, err := os.Stat(bin); err == nil && info.Mode().IsRegular() {
		return bin, nil
	}
	wrapper, err := WrapperDir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", tmp,
		"github.com/GoogleContainerTools/kaniko/cmd/executor")
	cmd.Dir = wrapper
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN="+Toolchain, "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("building kaniko %s executor: %w\n%s", Version, err, tail(string(out), 4096))
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// tail keeps the last n bytes of s, starting at a line boundary.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
