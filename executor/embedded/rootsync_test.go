package embedded

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(content, "->") {
			if err := os.Symlink(strings.TrimPrefix(content, "->"), p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// describe lists a tree: path → kind, mode, content or target, inode group.
func describe(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "link " + target
		case fi.IsDir():
			out[rel] = "dir " + fi.Mode().Perm().String() + " " + fi.ModTime().UTC().String()
		case !fi.Mode().IsRegular():
			out[rel] = fi.Mode().String() // a read would block on a fifo
		default:
			b, _ := os.ReadFile(p)
			group := rel
			if st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					group = first
				} else {
					inodes[st.Ino] = rel
				}
			}
			out[rel] = "file " + fi.Mode().String() + " " + fi.ModTime().UTC().String() + " " + string(b) + " links:" + group
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSyncTreeMakesDestinationEqual(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeTree(t, src, map[string]string{
		"same-size":      "AAAA",
		"dir/file":       "new content",
		"dir/link":       "->file",
		"becomes-file":   "was a dir in dst",
		"hard/a":         "shared",
		"keep/mounted/x": "the image's, not the container's",
	})
	if err := os.Link(filepath.Join(src, "hard/a"), filepath.Join(src, "hard/b")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(src, "dir/file"), "user.kiln", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	old := time.Unix(1600000000, 0)
	os.Chtimes(filepath.Join(src, "same-size"), old, old)
	os.Chmod(filepath.Join(src, "dir"), 0o750)

	writeTree(t, dst, map[string]string{
		"same-size":          "BBBB", // same size and time, other bytes
		"extra/deep/file":    "only in dst",
		"becomes-file/child": "x",
		"keep/mounted/x":     "the container's mount",
		"dir/link":           "->elsewhere",
	})
	os.Chtimes(filepath.Join(dst, "same-size"), old, old)

	skip := newSkipList()
	skip.add("/keep/mounted")
	if err := syncTree(src, dst, skip, time.Time{}); err != nil {
		t.Fatal(err)
	}
	want, got := describe(t, src), describe(t, dst)
	want["keep/mounted/x"], want["keep/mounted"] = got["keep/mounted/x"], got["keep/mounted"]
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s = %q, want %q", p, got[p], w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s left in the destination", p)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "keep/mounted/x")); string(b) != "the container's mount" {
		t.Errorf("a skipped path was touched: %q", b)
	}
	if v, err := xattrs(filepath.Join(dst, "dir/file")); err != nil || string(v["user.kiln"]) != "v" {
		t.Errorf("user xattr = %v, %v", v, err)
	}
}

func TestSyncTreeSkipsWhatTheRunDidNotTouch(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeTree(t, src, map[string]string{"untouched": "1111", "touched": "2222"})
	writeTree(t, dst, map[string]string{"untouched": "9999", "touched": "2222"})
	start := time.Now().Add(time.Second)
	if err := syncTree(src, dst, newSkipList(), start); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "untouched")); string(b) != "9999" {
		t.Errorf("a file older than the RUN was copied: %q", b)
	}
}

func TestMountStubDirectoriesAreNotResults(t *testing.T) {
	root, snapshot := t.TempDir(), t.TempDir()
	writeTree(t, root, map[string]string{"etc/hosts": "runtime", "etc/empty-parent/mnt/x": "volume", "new/file": "from RUN"})
	skip := newSkipList()
	skip.add("/etc/hosts")
	skip.add("/etc/empty-parent/mnt")
	if err := syncTree(root, snapshot, skip, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got := describe(t, snapshot)
	if _, ok := got["etc"]; ok {
		t.Errorf("a directory holding only the container's mounts became a result: %v", got)
	}
	if _, ok := got["new/file"]; !ok {
		t.Errorf("RUN's file missing: %v", got)
	}
}

// TestEmptyImageDirectoriesReachTheRoot: an empty directory of the image
// whose skipped paths are absent (Debian's /tmp; apt's key directory under
// it is skipped) is created in the root, with its mode: apt writes there.
func TestEmptyImageDirectoriesReachTheRoot(t *testing.T) {
	root, snapshot := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(snapshot, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(snapshot, "tmp"), os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	skip := newSkipList()
	skip.addPrefix("/tmp/apt-key-gpghome")
	if err := syncTree(snapshot, root, skip, time.Time{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, "tmp"))
	if err != nil {
		t.Fatalf("the image's empty /tmp is not in the root: %v", err)
	}
	if fi.Mode()&(os.ModePerm|os.ModeSticky) != os.ModePerm|os.ModeSticky {
		t.Errorf("/tmp has mode %v, want 1777", fi.Mode())
	}
}

func TestLinkTreeKeepsAndRestoresTheSameFiles(t *testing.T) {
	root, stash := t.TempDir(), filepath.Join(t.TempDir(), "stash")
	writeTree(t, root, map[string]string{"bin/tool": "kiln's own", "etc/hosts": "runtime"})
	if err := os.Symlink("/busybox/sh", filepath.Join(root, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	before := describe(t, root)
	skip := newSkipList()
	skip.add("/etc/hosts")
	if err := os.MkdirAll(stash, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := linkTree(root, stash, skip); err != nil {
		t.Fatal(err)
	}
	// A build replaces the root's tree.
	build := t.TempDir()
	writeTree(t, build, map[string]string{"bin/sh": "the image's shell", "app": "x"})
	if err := syncTree(build, root, skip, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(stash, "bin/tool")); string(b) != "kiln's own" {
		t.Fatalf("the stash lost the root's file: %q", b)
	}
	if err := linkTree(stash, root, skip); err != nil {
		t.Fatal(err)
	}
	after := describe(t, root)
	for p, w := range before {
		if strings.HasPrefix(w, "file") {
			// restored files share their inode with the stash
			w = strings.Split(w, " links:")[0]
			after[p] = strings.Split(after[p], " links:")[0]
		}
		if after[p] != w {
			t.Errorf("%s = %q after restoring, %q before", p, after[p], w)
		}
	}
	if _, ok := after["app"]; ok {
		t.Error("the build's file stayed after restoring")
	}
}

func TestHiddenFilesComeBackAsTheyWere(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Unix(1650000000, 0)
	os.Chtimes(path, old, old)
	hidden, exposed, err := hideFiles([]string{path, filepath.Join(dir, "missing.json")})
	if err != nil || len(exposed) != 0 || len(hidden) != 1 {
		t.Fatalf("hideFiles = %d hidden, %v exposed, %v", len(hidden), exposed, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the credentials are still readable: %v", err)
	}
	if err := os.WriteFile(path, []byte("written by a RUN"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := putBack(hidden); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	b, _ := os.ReadFile(path)
	if err != nil || string(b) != `{"auths":{}}` || fi.Mode().Perm() != 0o600 || !fi.ModTime().Equal(old) {
		t.Errorf("restored %q mode %v time %v (%v)", b, fi.Mode(), fi.ModTime(), err)
	}
}

func TestMountPointsFromMountinfo(t *testing.T) {
	info := "22 1 0:21 / / rw - overlay overlay rw\n" +
		"23 22 0:22 / /proc rw - proc proc rw\n" +
		"24 22 8:1 /x /etc/hosts rw - ext4 /dev/sda1 rw\n" +
		"25 22 8:1 /y /with\\040space rw - ext4 /dev/sda1 rw\n"
	skip, err := kanikoSkipList("/kaniko", strings.NewReader(info), "/kaniko/buildkit/state")
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"proc", "etc/hosts", "with space", "kaniko", "etc/mtab", "tmp/apt-key-gpghome.X1", "kaniko/buildkit/state"} {
		if !skip.has(rel) {
			t.Errorf("%s is not skipped", rel)
		}
	}
	for _, rel := range []string{"", "etc", "tmp", "usr"} {
		if skip.has(rel) {
			t.Errorf("%s is skipped", rel)
		}
	}
}

// TestBuildKitPatchIsApplied: kiln's BuildKit patch is in this build (make
// builds through the generated go.work); without it the engine refuses to
// start.
func TestBuildKitPatchIsApplied(t *testing.T) {
	if err := checkPathOnlyBinds(t.TempDir()); err != nil {
		t.Fatalf("%v (run tests through make, or ./hack/buildkit-workspace.sh first)", err)
	}
}

func TestRootSyncTrustsWhatTheLastRunLeft(t *testing.T) {
	root, ran, next := t.TempDir(), t.TempDir(), t.TempDir()
	writeTree(t, root, map[string]string{"same": "1111", "rootchanged": "2222", "replaced": "3333"})
	if err := syncTree(root, ran, newSkipList(), time.Time{}); err != nil {
		t.Fatal(err)
	}
	// What a RUN's read-back records; the next step's snapshot is a link
	// farm of the RUN's.
	synced, err := syncFromRoot(root, ran, newSkipList(), time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(synced.files) != 3 {
		t.Fatalf("recorded %v", synced.files)
	}
	if err := linkFarm(ran, next); err != nil {
		t.Fatal(err)
	}

	// rewrite writes content keeping the file's time; replace makes it a
	// new file, else it is written in place.
	rewrite := func(path, content string, replace bool) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		write := func(p string) error { return os.WriteFile(p, []byte(content), 0o644) }
		if replace {
			err = placeAt(path, write)
		} else {
			err = write(path)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	// Written in place, which no snapshot writer does: only a sync that
	// trusts the record leaves the root's copy alone.
	rewrite(filepath.Join(next, "same"), "9999", false)
	// Replaced in the next snapshot and also changed in the root.
	rewrite(filepath.Join(next, "rootchanged"), "8888", true)
	rewrite(filepath.Join(root, "rootchanged"), "7777", false)
	// Replaced in the next snapshot by a file of the same size and time.
	rewrite(filepath.Join(next, "replaced"), "6666", true)

	if err := syncIntoRoot(next, root, newSkipList(), synced); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"same": "1111", "rootchanged": "8888", "replaced": "6666"} {
		if b, _ := os.ReadFile(filepath.Join(root, name)); string(b) != want {
			t.Errorf("root's %s = %q, want %q", name, b, want)
		}
	}
	// Once the recorded snapshot is gone its inodes may be anyone's.
	if err := os.RemoveAll(ran); err != nil {
		t.Fatal(err)
	}
	if err := syncIntoRoot(next, root, newSkipList(), synced); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "same")); string(b) != "9999" {
		t.Errorf("with the recorded snapshot gone the root kept %q", b)
	}
}
