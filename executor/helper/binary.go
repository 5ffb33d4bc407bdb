package helper

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// FindBinary looks for one of kiln's programs in binDir when set, else next
// to the running executable, else on PATH.
func FindBinary(binDir, name string) (string, error) {
	dirs := []string{binDir}
	if binDir == "" {
		if exe, err := os.Executable(); err == nil {
			dirs = []string{filepath.Dir(exe)}
		}
	}
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if binDir != "" {
		return "", fmt.Errorf("%s not found in %s: run make build", name, binDir)
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found next to the executor or on PATH: install it alongside the executor", name)
	}
	return p, nil
}
