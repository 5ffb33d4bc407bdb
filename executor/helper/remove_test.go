package helper

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestRemoveAllParallelRemovesDeepAndWideTrees(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	// Wide (one directory of more entries than a batch) and deep, with
	// symlinks (not followed) and a read-only directory.
	outside := t.TempDir()
	keep := filepath.Join(outside, "keep")
	if err := os.WriteFile(keep, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	wide := filepath.Join(root, "wide")
	deep := filepath.Join(root, "a", "b", "c", "d")
	for _, d := range []string{wide, deep} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3*removeBatch + 7 {
		if err := os.WriteFile(filepath.Join(wide, strconv.Itoa(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 40 {
		sub := filepath.Join(deep, "sub"+strconv.Itoa(i))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, "f"), []byte("data"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(deep, "link-out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "a", "b"), 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(root, "a", "b"), 0o755) })

	err := removeAllParallel(root)
	if os.Geteuid() != 0 {
		// Without root the read-only directory keeps its entries, as with
		// os.RemoveAll; the error must say so.
		if err == nil {
			t.Fatal("removeAllParallel reported success with a read-only directory in the way")
		}
		return
	}
	if err != nil {
		t.Fatalf("removeAllParallel: %v", err)
	}
	if _, err := os.Lstat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists (lstat: %v)", root, err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a symlink was followed out of the tree: %v", err)
	}
	if err := removeAllParallel(root); err != nil {
		t.Errorf("removing a missing tree: %v", err)
	}
}

func TestRemoveAfterExitLeavesTheWorkToAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	lock, err := os.Create(filepath.Join(dir, ".kiln-lock"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveAfterExit([]string{dir}, []*os.File{lock}, false, ""); err != nil {
		t.Fatal(err)
	}
	lock.Close()
	// Handed over, not done here: a synchronous removal would have
	// deleted the 2000 files before returning.
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the dir was removed before RemoveAfterExit returned: %v", err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the remover did not remove the dir within a minute")
		}
	}
}
