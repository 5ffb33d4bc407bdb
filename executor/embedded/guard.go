package embedded

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// kanikoGuard keeps the kaniko dir (kiln's binaries, CA certificates) as it
// was before RUN steps ran as root beside it: Kaniko's RUN can replace its
// executor (kaniko#106). Every file is held open and its identity noted; a
// file replaced or removed is written back from the open file, a file
// changed in place (its inode's ctime moved) fails the build, and files a
// RUN added are removed.
type kanikoGuard struct {
	dir      string
	skip     func(path string) bool
	files    map[string]guardedFile
	dirTimes map[string][2]unix.Timespec // relative to dir
}

type guardedFile struct {
	f  *os.File
	st unix.Stat_t
}

// guardKanikoDir notes every regular file below dir but the paths skip
// names (kiln's state, the build context, credentials handled apart).
func guardKanikoDir(dir string, skip func(path string) bool) (*kanikoGuard, error) {
	g := &kanikoGuard{dir: dir, skip: skip, files: map[string]guardedFile{}, dirTimes: map[string][2]unix.Timespec{}}
	err := g.walk(func(path string, st *unix.Stat_t) error {
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			g.dirTimes[rel] = [2]unix.Timespec{st.Atim, st.Mtim}
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		var fst unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &fst); err != nil {
			f.Close()
			return err
		}
		g.files[path] = guardedFile{f: f, st: fst}
		return nil
	})
	if err != nil {
		g.close()
		return nil, fmt.Errorf("noting the kaniko dir %s: %w", dir, err)
	}
	return g, nil
}

func (g *kanikoGuard) walk(fn func(path string, st *unix.Stat_t) error) error {
	err := filepath.WalkDir(g.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if path != g.dir && g.skip(path) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() && !d.IsDir() {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		return fn(path, &st)
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// restore puts the kaniko dir back as noted.
func (g *kanikoGuard) restore() error {
	var errs []error
	for path, gf := range g.files {
		var st unix.Stat_t
		err := unix.Lstat(path, &st)
		switch {
		case err == nil && st.Ino == gf.st.Ino && st.Dev == gf.st.Dev:
			if st.Ctim != gf.st.Ctim {
				errs = append(errs, fmt.Errorf("a RUN step changed %s in place: kiln cannot trust this container's copy any more; start a fresh container", path))
			}
		case err == nil || errors.Is(err, unix.ENOENT):
			if err := g.writeBack(path, gf); err != nil {
				errs = append(errs, fmt.Errorf("putting back %s: %w", path, err))
			}
		default:
			errs = append(errs, &fs.PathError{Op: "lstat", Path: path, Err: err})
		}
	}
	var added []string
	if err := g.walk(func(path string, st *unix.Stat_t) error {
		if _, ok := g.files[path]; !ok && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			added = append(added, path)
		}
		return nil
	}); err != nil {
		errs = append(errs, err)
	}
	for _, path := range added {
		errs = append(errs, os.Remove(path))
	}
	delete(g.dirTimes, ".") // the kaniko dir itself is kiln's workplace
	errs = append(errs, setTreeTimes(g.dir, g.dirTimes))
	return errors.Join(errs...)
}

// writeBack recreates a replaced or removed file from its open original.
func (g *kanikoGuard) writeBack(path string, gf guardedFile) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		if err := os.RemoveAll(path); err != nil {
			return err
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var st unix.Stat_t
	if unix.Lstat(path, &st) == nil && st.Ino == gf.st.Ino && st.Dev == gf.st.Dev && st.Ctim == gf.st.Ctim {
		return nil // the original came back (a lower layer's file on fuse-overlayfs)
	}
	return placeAt(path, func(target string) error {
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, io.NewSectionReader(gf.f, 0, gf.st.Size)); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
		if err := os.Lchown(target, int(gf.st.Uid), int(gf.st.Gid)); err != nil {
			return err
		}
		if err := os.Chmod(target, fs.FileMode(gf.st.Mode&0o777)|modeBits(gf.st.Mode)); err != nil {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, target, []unix.Timespec{gf.st.Atim, gf.st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
	})
}

func modeBits(m uint32) fs.FileMode {
	var out fs.FileMode
	if m&unix.S_ISUID != 0 {
		out |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		out |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		out |= fs.ModeSticky
	}
	return out
}

func (g *kanikoGuard) close() {
	for _, gf := range g.files {
		gf.f.Close()
	}
}
