package embedded

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func snapshotDir(t *testing.T, s *linkSnapshotter, ctx context.Context, key string) string {
	t.Helper()
	mounts, err := s.Mounts(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := pathOf(mounts)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestLinkSnapshotterSharesUnchangedFilesWithTheParent(t *testing.T) {
	ctx := context.Background()
	s, err := newLinkSnapshotter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Prepare(ctx, "base-active", ""); err != nil {
		t.Fatal(err)
	}
	base := snapshotDir(t, s, ctx, "base-active")
	writeTree(t, base, map[string]string{"etc/passwd": "root:x:0:0", "bin/sh": "shell", "bin/ash": "->sh"})
	if err := os.Chmod(filepath.Join(base, "etc"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "base", "base-active"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.View(ctx, "view", "base"); err != nil {
		t.Fatal(err)
	}
	if got := snapshotDir(t, s, ctx, "view"); got != base {
		t.Errorf("a view of a committed snapshot is %s, not its directory %s", got, base)
	}
	want := describe(t, base)

	if _, err := s.Prepare(ctx, "child", "base"); err != nil {
		t.Fatal(err)
	}
	child := snapshotDir(t, s, ctx, "child")
	if child == base {
		t.Fatal("an active child shares its parent's directory")
	}
	if got := describe(t, child); len(got) != len(want) {
		t.Fatalf("child holds %v, parent %v", got, want)
	}
	for _, name := range []string{"etc/passwd", "bin/sh", "bin/ash"} {
		if inode(t, filepath.Join(child, name)) != inode(t, filepath.Join(base, name)) {
			t.Errorf("%s was copied, not linked", name)
		}
	}
	for _, name := range []string{".", "etc"} {
		if inode(t, filepath.Join(child, name)) == inode(t, filepath.Join(base, name)) {
			t.Errorf("directory %s is shared: a new entry would land in the parent", name)
		}
	}
	var bst, cst unix.Stat_t
	if err := unix.Lstat(base, &bst); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(child, &cst); err != nil {
		t.Fatal(err)
	}
	if bst.Mode != cst.Mode || bst.Mtim != cst.Mtim {
		t.Errorf("the snapshot root's mode/time %o/%v, parent's %o/%v", cst.Mode, cst.Mtim, bst.Mode, bst.Mtim)
	}

	// A writer replaces what it changes (as every writer of snapshots
	// does): the parent keeps its file.
	if err := placeAt(filepath.Join(child, "etc/passwd"), func(p string) error {
		return os.WriteFile(p, []byte("changed"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	writeTree(t, child, map[string]string{"etc/new": "new"})
	if got := describe(t, base); len(got) != len(want) || got["etc/passwd"] != want["etc/passwd"] {
		t.Errorf("the parent changed with its child: %v, was %v", got, want)
	}

	if err := s.Remove(ctx, "view"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(base); err != nil {
		t.Errorf("removing a view removed its parent's directory: %v", err)
	}
	if err := s.Remove(ctx, "child"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(child); !os.IsNotExist(err) {
		t.Errorf("a removed snapshot's directory is still there: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(base, "etc/passwd")); string(b) != "root:x:0:0" {
		t.Errorf("removing the child changed the parent: %q", b)
	}
}

func TestLinkSnapshotterLeavesRemovedSnapshotsAsideForThrowAwayState(t *testing.T) {
	ctx := context.Background()
	for _, leave := range []bool{false, true} {
		root := t.TempDir()
		s, err := newLinkSnapshotter(root)
		if err != nil {
			t.Fatal(err)
		}
		s.leaveRemoved = leave
		if _, err := s.Prepare(ctx, "active", ""); err != nil {
			t.Fatal(err)
		}
		writeTree(t, snapshotDir(t, s, ctx, "active"), map[string]string{"f": "data"})
		if err := s.Remove(ctx, "active"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, "active"); err == nil {
			t.Errorf("leave %v: the removed snapshot is still recorded", leave)
		}
		aside, _ := filepath.Glob(filepath.Join(root, "snapshots", "rm-*", "f"))
		if leave != (len(aside) == 1) {
			t.Errorf("leave %v: files moved aside %v", leave, aside)
		}
		s.Close()
	}
}

// TestLinkSnapshotterMeasuresCommittedSnapshotsWhenAsked: Commit no longer
// walks the tree, so Usage must.
func TestLinkSnapshotterMeasuresCommittedSnapshotsWhenAsked(t *testing.T) {
	ctx := context.Background()
	s, err := newLinkSnapshotter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Prepare(ctx, "active", ""); err != nil {
		t.Fatal(err)
	}
	writeTree(t, snapshotDir(t, s, ctx, "active"), map[string]string{"a": string(make([]byte, 64<<10)), "b/c": "x"})
	if err := s.Commit(ctx, "committed", "active"); err != nil {
		t.Fatal(err)
	}
	u, err := s.Usage(ctx, "committed")
	if err != nil {
		t.Fatal(err)
	}
	if u.Size < 64<<10 || u.Inodes < 3 {
		t.Errorf("usage of the committed snapshot is %+v, want at least 64 KiB and 3 inodes", u)
	}
	if _, err := s.View(ctx, "view", "committed"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Usage(ctx, "view"); err != nil {
		t.Errorf("usage of a view: %v", err)
	}
}

// TestLinkFarmLinksFilesAndRemakesDirectories: in one filesystem every
// file is its parent's inode; across filesystems (no link possible) files
// are copied and hardlink pairs stay pairs. Sockets are left out.
func TestLinkFarmLinksFilesAndRemakesDirectories(t *testing.T) {
	for _, tc := range []struct {
		name, srcParent string
		linked          bool
	}{
		{"same filesystem", t.TempDir(), true},
		{"another filesystem", shmDir(t), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := filepath.Join(tc.srcParent, "src"), filepath.Join(t.TempDir(), "dst")
			for _, d := range []string{src, dst} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			writeTree(t, src, map[string]string{"a/b/file": "content", "a/link": "->b/file", "a/hard1": "pair"})
			if err := os.Link(filepath.Join(src, "a/hard1"), filepath.Join(src, "a/hard2")); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mkfifo(filepath.Join(src, "fifo"), 0o640); err != nil {
				t.Fatal(err)
			}
			sock, err := net.Listen("unix", filepath.Join(src, "a/sock"))
			if err != nil {
				t.Fatal(err)
			}
			defer sock.Close()
			if err := os.Chmod(filepath.Join(src, "a/b"), 0o750); err != nil {
				t.Fatal(err)
			}
			old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
			for _, d := range []string{"a/b", "a"} {
				if err := os.Chtimes(filepath.Join(src, d), old, old); err != nil {
					t.Fatal(err)
				}
			}
			want := describe(t, src)
			delete(want, "a/sock")
			if err := linkFarm(src, dst); err != nil {
				t.Fatal(err)
			}
			got := describe(t, dst)
			if len(got) != len(want) {
				t.Errorf("farm holds %v, want %v", got, want)
			}
			for p, w := range want {
				if got[p] != w {
					t.Errorf("%s: farm has %q, source %q", p, got[p], w)
				}
			}
			for _, p := range []string{"a/b/file", "a/link", "a/hard1", "fifo"} {
				if same := inode(t, filepath.Join(src, p)) == inode(t, filepath.Join(dst, p)); same != tc.linked {
					t.Errorf("%s shares its source's inode: %v, want %v", p, same, tc.linked)
				}
			}
		})
	}
}

// shmDir is a directory on a tmpfs, another filesystem than t.TempDir's
// here; the test needs one.
func shmDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "kiln-farm-")
	if err != nil {
		t.Fatalf("a tmpfs directory for a cross-filesystem farm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var a, b unix.Stat_t
	if unix.Stat(dir, &a) != nil || unix.Stat(os.TempDir(), &b) != nil || a.Dev == b.Dev {
		t.Fatalf("/dev/shm is not another filesystem than %s here", os.TempDir())
	}
	return dir
}
