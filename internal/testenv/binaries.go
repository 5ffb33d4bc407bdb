package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bins are the programs `make build` writes to <repo root>/bin.
type Bins struct {
	Executor    string
	KilnRunc    string
	Buildkitd   string
	Rootlesskit string
}

// Binaries returns the built binaries, failing the test when any is missing.
func Binaries(t testing.TB) Bins {
	t.Helper()
	return must[Bins](t)(binariesIn(filepath.Join(RepoRoot(t), "bin")))
}

func binariesIn(dir string) (Bins, error) {
	bins := Bins{
		Executor:    filepath.Join(dir, "executor"),
		KilnRunc:    filepath.Join(dir, "kiln-runc"),
		Buildkitd:   filepath.Join(dir, "buildkitd"),
		Rootlesskit: filepath.Join(dir, "rootlesskit"),
	}
	var missing []string
	for _, path := range []string{bins.Executor, bins.KilnRunc, bins.Buildkitd, bins.Rootlesskit} {
		if info, err := os.Stat(path); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			missing = append(missing, filepath.Base(path))
		}
	}
	if len(missing) > 0 {
		return Bins{}, fmt.Errorf("%s missing from %s: run make build", strings.Join(missing, ", "), dir)
	}
	return bins, nil
}
