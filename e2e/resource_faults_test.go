package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// smallStateDir is a fresh state dir on a tmpfs of size (mount's size=),
// owned by the mode's user, unmounted when the test ends.
func smallStateDir(t *testing.T, m mode, size string) string {
	t.Helper()
	state := m.stateDir(t)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tmpfs", state).CombinedOutput(); err != nil {
		t.Fatalf("mounting a %s tmpfs on %s: %v: %s", size, state, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", state).CombinedOutput(); err != nil {
			t.Errorf("unmounting %s: %v: %s", state, err, out)
		}
	})
	if m.rootless {
		if err := os.Chown(state, m.user.UID, m.user.GID); err != nil {
			t.Fatal(err)
		}
	}
	return state
}

// TestStateFilesystemFull: the filesystem holding the daemon's state and
// the executor's work dir fills up, in a RUN (the RUN's own error and exit
// code) or while the image is exported and shaped (kiln's and BuildKit's
// own writes): one line naming the cause, nothing pushed, and nothing left
// on the full filesystem.
func TestStateFilesystemFull(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	cases := []struct {
		name, run string
		output    string // in stdout or stderr
		errorLine string // in the last line; "<state>" is the state dir
	}{
		{"in-run", "RUN dd if=/dev/zero of=/big bs=1M count=64", "No space left on device", "did not complete successfully: exit code: 1"},
		{"at-export", "RUN head -c 9000000 /dev/urandom > /blob", "", "no space left on device in <state>, which holds this build's BuildKit state"},
	}
	forEachMode(t, func(t *testing.T, m mode) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				repo := "e2e/" + m.name + "/full-" + c.name
				state := smallStateDir(t, m, "24m")
				r := m.run(t, state, mirrorArgs(writeContext(t, "FROM busybox\n"+c.run+"\n"), reg, reg.Ref(repo+":v1")))
				r.assertOneLineFailure(t, strings.ReplaceAll(c.errorLine, "<state>", state))
				if !strings.Contains(r.stdout+r.stderr, c.output) {
					t.Errorf("the output never says %q", c.output)
				}
				assertNothingPushed(t, reg, repo)
				entries, _ := os.ReadDir(state)
				for _, e := range entries {
					t.Errorf("left on the full filesystem: %s", filepath.Join(state, e.Name()))
				}
			})
		}
	})
}
