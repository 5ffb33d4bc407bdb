package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var cosignOnce struct {
	sync.Once
	path string
	err  error
}

// Cosign returns the real cosign CLI, built once per test process from the
// module version go.mod pins (its tool directive) into the test cache, under
// a lock shared by parallel test binaries. Go's build cache makes every
// build after the first a link step.
func Cosign(t testing.TB) string {
	t.Helper()
	cosignOnce.Do(func() { cosignOnce.path, cosignOnce.err = buildCosign() })
	return must[string](t)(cosignOnce.path, cosignOnce.err)
}

func buildCosign() (string, error) {
	root, err := findRepoRoot()
	if err != nil {
		return "", err
	}
	cache, err := cacheDir()
	if err != nil {
		return "", err
	}
	unlock, err := lockFile(filepath.Join(cache, "cosign.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	path := filepath.Join(cache, "cosign")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", path, "github.com/sigstore/cosign/v2/cmd/cosign")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the cosign CLI from go.mod's tool directive: %v\n%s", err, out)
	}
	return path, nil
}

// CosignKeyPair makes a cosign key pair with the real CLI (cosign's
// encrypted PEM, protected by password) and returns the key files.
func CosignKeyPair(t testing.TB, password string) (privateKey, publicKey string) {
	t.Helper()
	dir := ReadableTempDir(t)
	cmd := exec.Command(Cosign(t), "generate-key-pair")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+password)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	privateKey, publicKey = filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	for _, f := range []string{privateKey, publicKey} {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return privateKey, publicKey
}
