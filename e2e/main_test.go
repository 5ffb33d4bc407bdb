package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain gives the whole suite one private temp dir and, once every test
// has ended, fails the run when anything of kiln is left on the machine: a
// process of the built binaries (or one naming the suite's dir), a mount
// under the dir, or a file in it.
func TestMain(m *testing.M) {
	suiteDir, err := os.MkdirTemp("", "kiln-suite-")
	if err == nil {
		// The rootless user's runs live below it too.
		err = os.Chmod(suiteDir, 0o755)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "creating the suite's temp dir: %v\n", err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", suiteDir)
	code := m.Run()
	if left := leftovers(suiteDir); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: kiln left these behind after the suite:\n  %s\n", strings.Join(left, "\n  "))
		code = 1
	} else {
		fmt.Fprintln(os.Stderr, "suite end: no kiln process, mount or temp dir is left")
	}
	os.RemoveAll(suiteDir)
	os.Exit(code)
}

// leftovers lists what the suite left: processes run from the repo's bin
// dir or naming suiteDir, mounts under it, entries in it.
func leftovers(suiteDir string) []string {
	var left []string
	bin, _ := filepath.Abs(filepath.Join("..", "bin"))
	exes, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, exe := range exes {
		proc := filepath.Dir(exe)
		if proc == "/proc/"+fmt.Sprint(os.Getpid()) {
			continue
		}
		target, _ := os.Readlink(exe)
		cmdline, _ := os.ReadFile(filepath.Join(proc, "cmdline"))
		if strings.HasPrefix(target, bin+"/") || bytes.Contains(cmdline, []byte(suiteDir+"/")) {
			left = append(left, fmt.Sprintf("process %s: %s", filepath.Base(proc), bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	mountinfo, _ := os.ReadFile("/proc/self/mountinfo")
	for line := range strings.SplitSeq(string(mountinfo), "\n") {
		if strings.Contains(line, suiteDir+"/") {
			left = append(left, "mount: "+line)
		}
	}
	entries, _ := os.ReadDir(suiteDir)
	for _, e := range entries {
		left = append(left, "temp dir entry: "+filepath.Join(suiteDir, e.Name()))
	}
	return left
}
