package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// privateDirLock is the file whose flock marks a private dir as in use: the
// executor holds it, and so does its reaper, so a dir whose lock can be
// taken belongs to no live build.
const privateDirLock = ".kiln-lock"

// The private dirs a build makes and removes on every exit path it lives
// through: the engine's state and the build's work dir.
const (
	stateDirPrefix = "kiln-buildkit-"
	workDirPrefix  = "kiln-build-"
)

// NewStateDir creates an engine's private state dir under parent (empty
// means os.TempDir()), locked until lock is closed (see lockPrivateDir).
func NewStateDir(parent string) (dir string, lock *os.File, err error) {
	return newPrivateDir(parent, stateDirPrefix, "the BuildKit state dir")
}

// NewWorkDir creates the build's private work dir under parent, locked
// like a state dir.
func NewWorkDir(parent string) (dir string, lock *os.File, err error) {
	return newPrivateDir(parent, workDirPrefix, "a work directory")
}

func newPrivateDir(parent, prefix, what string) (string, *os.File, error) {
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		if parent == "" {
			parent = os.TempDir()
		}
		return "", nil, fmt.Errorf("creating %s under %s (check that it is writable): %w", what, parent, err)
	}
	lock, err := lockPrivateDir(dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("locking %s %s: %w", what, dir, err)
	}
	return dir, lock, nil
}

// lockPrivateDir marks dir as in use until the returned file is closed or
// the process (and every child the file was handed to) has ended.
// The lock file appears under its name already locked, so a sweeping build
// never finds it free in between.
func lockPrivateDir(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, ".kiln-lock-new-")
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, privateDirLock)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// SweepStaleDirs removes with remove the private dirs under parents that a
// killed build left behind (one whose reaper was killed too). A dir is
// stale only when it is this user's, has a lock file and nobody holds the
// lock: a dir being created (no lock file yet), one of another user or of a
// live build stays.
func SweepStaleDirs(log logrus.FieldLogger, remove func(dir string) error, parents ...string) {
	seen := map[string]bool{}
	for _, parent := range parents {
		if parent == "" || seen[parent] {
			continue
		}
		seen[parent] = true
		for _, prefix := range []string{stateDirPrefix, workDirPrefix} {
			dirs, _ := filepath.Glob(filepath.Join(parent, prefix+"*"))
			for _, dir := range dirs {
				removed, err := removeIfStale(dir, remove)
				switch {
				case err != nil:
					log.Debugf("left %s, a killed build's private dir: %v", dir, err)
				case removed:
					log.Debugf("removed %s, a killed build's private dir", dir)
				}
			}
		}
	}
}

func removeIfStale(dir string, remove func(dir string) error) (removed bool, err error) {
	info, err := os.Lstat(dir)
	if err != nil || !info.IsDir() {
		return false, nil
	}
	if st, ok := info.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
		return false, nil
	}
	lock, err := os.OpenFile(filepath.Join(dir, privateDirLock), os.O_RDWR|syscall.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer lock.Close()
	if unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return false, nil // a live build's
	}
	// Held while removing, so two sweeping builds do not both remove it.
	if err := remove(dir); err != nil {
		return false, err
	}
	return true, nil
}
