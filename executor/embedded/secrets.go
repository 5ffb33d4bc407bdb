package embedded

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// hiddenFile is a credential file taken off the filesystem while RUN steps
// run as root in the same root filesystem (Kaniko's RUN can read them:
// kaniko#106); only this process's memory holds it meanwhile.
type hiddenFile struct {
	path    string
	content []byte
	mode    os.FileMode
	uid     int
	gid     int
	atime   unix.Timespec
	mtime   unix.Timespec
}

// hideFiles removes each existing regular file from paths after reading it
// into memory. A file it cannot remove (on a read-only mount, or a mount
// point itself) stays, and is reported in exposed.
func hideFiles(paths []string) (hidden []hiddenFile, exposed []string, err error) {
	for _, path := range paths {
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return hidden, exposed, &fs.PathError{Op: "lstat", Path: path, Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		content, err := os.ReadFile(path)
		if err != nil {
			return hidden, exposed, err
		}
		h := hiddenFile{path: path, content: content, mode: os.FileMode(st.Mode & 0o7777), uid: int(st.Uid), gid: int(st.Gid), atime: st.Atim, mtime: st.Mtim}
		if err := os.Remove(path); err != nil {
			exposed = append(exposed, path)
			continue
		}
		hidden = append(hidden, h)
	}
	return hidden, exposed, nil
}

// put writes the file back as it was, over whatever a RUN left there.
func (h hiddenFile) put() error {
	if err := os.MkdirAll(filepath.Dir(h.path), 0o700); err != nil {
		return err
	}
	return placeAt(h.path, func(tmp string) error {
		if err := os.WriteFile(tmp, h.content, 0o600); err != nil {
			return err
		}
		if err := os.Lchown(tmp, h.uid, h.gid); err != nil {
			return err
		}
		if err := os.Chmod(tmp, h.mode.Perm()|h.mode&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky)); err != nil {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, tmp, []unix.Timespec{h.atime, h.mtime}, unix.AT_SYMLINK_NOFOLLOW)
	})
}

func putBack(hidden []hiddenFile) error {
	var errs []error
	for _, h := range hidden {
		if err := h.put(); err != nil {
			errs = append(errs, fmt.Errorf("restoring %s: %w", h.path, err))
		}
	}
	return errors.Join(errs...)
}
