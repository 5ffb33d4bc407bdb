package corpus

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ContextTime is the mtime every context entry gets, so builds do not depend
// on when the checkout happened.
var ContextTime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// Materialize writes the case's build context into dest (which must not
// exist): a copy of the case directory without the manifest and serve/,
// normalised to root ownership, 0644/0755 modes and ContextTime, then the
// manifest's file specs applied in order. It needs root for owners.
func (c *Case) Materialize(dest string) error {
	if err := copyTree(c.Dir, dest); err != nil {
		return fmt.Errorf("case %s: copying context: %w", c.Name, err)
	}
	for _, f := range c.Files {
		if err := f.apply(dest); err != nil {
			return fmt.Errorf("case %s: files %s: %w", c.Name, f.Path, err)
		}
	}
	return stampTimes(dest)
}

func copyTree(src, dest string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if rel == ManifestName || rel == ServeDir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dest, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Mkdir(target, 0o755)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			mode := fs.FileMode(0o644)
			if info.Mode()&0o111 != 0 {
				mode = 0o755
			}
			return copyFile(path, target, mode)
		}
		return fmt.Errorf("%s: unsupported file type %s", path, info.Mode().Type())
	})
}

func copyFile(src, dest string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	// The umask may have narrowed the mode.
	return os.Chmod(dest, mode)
}

func (f FileSpec) apply(root string) error {
	path := filepath.Join(root, f.Path)
	if f.Symlink != "" || f.Hardlink != "" || f.Dir || f.Size > 0 || f.Count > 0 {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
	}
	switch {
	case f.Symlink != "":
		if err := os.Symlink(f.Symlink, path); err != nil {
			return err
		}
	case f.Hardlink != "":
		if err := os.Link(filepath.Join(root, f.Hardlink), path); err != nil {
			return err
		}
	case f.Dir:
		if err := os.Mkdir(path, 0o755); err != nil {
			return err
		}
	case f.Size > 0:
		if err := writeRandom(path, f.Size, f.Path); err != nil {
			return err
		}
	case f.Count > 0:
		if err := writeMany(path, f.Count); err != nil {
			return err
		}
	case f.Tar != "":
		if err := writeTar(filepath.Join(root, f.Tar), path, f.Gzip); err != nil {
			return err
		}
		if !f.KeepSource {
			if err := os.RemoveAll(filepath.Join(root, f.Tar)); err != nil {
				return err
			}
		}
	}
	if f.Owner != "" {
		uid, gid, _ := parseOwner(f.Owner)
		if err := os.Lchown(path, uid, gid); err != nil {
			return err
		}
	}
	if f.Mode != "" {
		mode, _ := parseMode(f.Mode)
		if err := os.Chmod(path, mode); err != nil {
			return err
		}
	}
	return nil
}

// writeRandom writes size bytes seeded by name so the content is stable.
func writeRandom(path string, size int64, name string) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	var seed uint64
	for _, b := range []byte(name) {
		seed = seed*131 + uint64(b)
	}
	src := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	if _, err := io.CopyN(out, src, size); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func writeMany(dir string, count int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := range count {
		sub := filepath.Join(dir, fmt.Sprintf("d%02d", i%50))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
		body := fmt.Sprintf("file %d\n", i)
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%05d.txt", i)), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeTar archives srcDir with fixed, owner-neutral headers.
func writeTar(srcDir, dest string, gz bool) error {
	out, err := os.Create(dest)
	if err != nil {
		return err
	}
	defer out.Close()
	var w io.Writer = out
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(out)
		w = zw
	}
	tw := tar.NewWriter(w)
	var paths []string
	err = filepath.WalkDir(srcDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != srcDir {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	for _, path := range paths {
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(srcDir, path)
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = ContextTime, time.Time{}, time.Time{}
		hdr.Format = tar.FormatUSTAR
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			if err := copyInto(tw, path); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return err
		}
	}
	return out.Close()
}

func copyInto(w io.Writer, path string) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = io.Copy(w, in)
	return err
}

func stampTimes(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		return os.Chtimes(path, ContextTime, ContextTime)
	})
}

func parseMode(s string) (fs.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return 0, fmt.Errorf("mode %q must be octal like 0644 or 4755", s)
	}
	mode := fs.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode, nil
}

func parseOwner(s string) (int, int, error) {
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if !ok || err1 != nil || err2 != nil || uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("owner %q must be numeric uid:gid", s)
	}
	return uid, gid, nil
}
