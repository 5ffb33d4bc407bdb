package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// TestMain gives the whole suite one private temp dir and, once every test
// has ended, fails the run when anything of kiln is left on the machine: a
// process naming the suite's dir (every executor run, daemon and RUN of the
// suite lives below it; other packages' tests using the same binaries do
// not), a mount under the dir, or a file in it.
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
	// What the last builds handed to removers may still be going.
	testenv.AwaitRemovers(suiteDir+"/", 2*time.Minute)
	if left := leftovers(suiteDir); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: kiln left these behind after the suite:\n  %s\n", strings.Join(left, "\n  "))
		code = 1
	} else {
		fmt.Fprintln(os.Stderr, "suite end: no kiln process, mount or temp dir is left")
	}
	os.RemoveAll(suiteDir)
	os.Exit(code)
}

// leftovers lists what the suite left: processes naming suiteDir, mounts
// under it, entries in it.
func leftovers(suiteDir string) []string {
	var left []string
	for _, p := range processesMentioning(suiteDir+"/", os.Getpid()) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid))
		left = append(left, fmt.Sprintf("process %d: %s", p.pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
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

// TestLeftoversFindsWhatIsLeft: the end-of-suite check sees a process and
// a file of the suite's dir.
func TestLeftoversFindsWhatIsLeft(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kiln-build-1"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("sh", "-c", "sleep 60; : "+dir+"/marker")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Wait()
	defer sleeper.Process.Kill()
	left := strings.Join(leftovers(dir), "\n")
	for _, want := range []string{"temp dir entry: " + filepath.Join(dir, "kiln-build-1"), fmt.Sprintf("process %d: sh -c sleep 60", sleeper.Process.Pid)} {
		if !strings.Contains(left, want) {
			t.Errorf("leftovers missed %q:\n%s", want, left)
		}
	}
}
