package kaniko

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrapperPinsVersion(t *testing.T) {
	dir, err := WrapperDir()
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mod), "github.com/GoogleContainerTools/kaniko "+Version) {
		t.Fatalf("wrapper go.mod does not require kaniko %s", Version)
	}
	if !strings.Contains(string(mod), "toolchain "+Toolchain) {
		t.Fatalf("wrapper go.mod does not pin toolchain %s", Toolchain)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.sum")); err != nil {
		t.Fatalf("wrapper go.sum missing: %v", err)
	}
}

func TestEnsureExecutorUsesCache(t *testing.T) {
	cache := t.TempDir()
	cached := filepath.Join(cache, "kaniko-"+Version, "executor")
	if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cached, []byte("cached"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A cancelled context makes any build attempt fail, so success proves
	// the cached binary was used.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got, err := EnsureExecutor(ctx, cache)
	if err != nil || got != cached {
		t.Fatalf("EnsureExecutor = %q, %v; want cached %q", got, err, cached)
	}
}

func TestTail(t *testing.T) {
	if got := tail("short", 10); got != "short" {
		t.Errorf("tail kept %q", got)
	}
	if got := tail("line one\nline two\nline three", 12); got != "line three" {
		t.Errorf("tail = %q, want whole last line", got)
	}
}
