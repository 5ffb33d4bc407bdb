package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnbuild/kiln/internal/testenv"
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

// TestContextUnreadableMidway: files and a directory of the context lose
// their read permission while the executor runs (rootless: root reads
// anything), as soon as its daemon is up, so while the context is sent.
// Whatever point the transfer had reached, the build either fails with one
// line naming a context path and pushes nothing, or pushes an image with
// every file whole: never a missing or empty file.
func TestContextUnreadableMidway(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	testenv.RequireUserNamespaces(t)
	m := mode{name: "rootless", rootless: true, user: testenv.NonRootUser(t)}
	reg := mirrorRegistry(t)
	ctx := writeContext(t, "FROM busybox\nCOPY data/ /data/\n")
	content := strings.Repeat("0123456789abcdef", 256) // 4 KiB
	var last []string
	for d := range 40 {
		dir := filepath.Join(ctx, "data", fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range 100 {
			path := filepath.Join(dir, fmt.Sprintf("f%03d", f))
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if d >= 38 {
				last = append(last, path)
			}
		}
	}
	repo := "e2e/rootless/unreadable-midway"
	state := m.stateDir(t)
	e := m.start(t, state, mirrorArgs(ctx, reg, reg.Ref(repo+":v1")))
	waitFor(t, e, buildTimeout, "the daemon to start", func() bool { return len(processesNamed(state+"/", "buildkitd")) > 0 })
	// Last in the walk first, so the sender meets them if it is still going.
	for i := len(last) - 1; i >= 0; i-- {
		os.Chmod(last[i], 0)
	}
	os.Chmod(filepath.Join(ctx, "data", "d39"), 0)
	t.Cleanup(func() { os.Chmod(filepath.Join(ctx, "data", "d39"), 0o755) })
	r := e.wait(t)
	if r.code != 0 {
		r.assertOneLineFailure(t, "in the build context "+ctx)
		assertNothingPushed(t, reg, repo)
		t.Logf("observed: the build failed, naming an unreadable context path")
		return
	}
	img := pulledOverAnyScheme(t, reg, reg.Ref(repo+":v1"))
	files := imageFiles(t, img, "data/")
	if len(files) != 40*100 {
		t.Errorf("the image holds %d files of data/, want %d", len(files), 40*100)
	}
	for name, f := range files {
		if f.content != content {
			t.Errorf("%s: %d bytes, want the whole %d", name, len(f.content), len(content))
		}
	}
	t.Logf("observed: the context was sent before it became unreadable; the image holds every file whole")
}
