package executor

import (
	"errors"
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

// privateDirPatterns name the dirs a build makes and removes on every exit
// path it lives through: the daemon's state and the work dir.
var privateDirPatterns = []string{"kiln-buildkit-*", "kiln-build-*"}

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

// sweepStaleDirs removes the private dirs under parents that a killed build
// left behind (one whose reaper was killed too). A dir is stale only when
// it is this user's, has a lock file and nobody holds the lock: a dir being
// created (no lock file yet), one of another user or of a live build stays.
func sweepStaleDirs(log logrus.FieldLogger, parents ...string) {
	seen := map[string]bool{}
	for _, parent := range parents {
		if parent == "" || seen[parent] {
			continue
		}
		seen[parent] = true
		for _, pattern := range privateDirPatterns {
			dirs, _ := filepath.Glob(filepath.Join(parent, pattern))
			for _, dir := range dirs {
				removed, err := removeIfStale(dir)
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

func removeIfStale(dir string) (removed bool, err error) {
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
	d := &localDaemon{dir: dir, rootless: os.Geteuid() != 0}
	if err := d.removeState(); err != nil {
		return false, err
	}
	return true, nil
}
