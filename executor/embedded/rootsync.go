package embedded

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// syncer makes the tree at dst hold exactly what the tree at src holds
// (contents, types, modes, owners, times, hardlinks, xattrs), path by path,
// without mount, chroot or rename of directories (a directory from a lower
// overlayfs layer cannot be renamed). Paths the skip list names are neither
// copied nor touched on either side.
type syncer struct {
	src, dst string
	skip     *skipList
	// unchangedBefore, when set, lets a non-directory of src whose ctime is
	// older be taken as equal to dst: it is how a RUN's result is read back,
	// since before the RUN dst and src held the same tree.
	unchangedBefore time.Time
	// linkFiles places non-directories as hardlinks of src's (the same
	// inode, so xattrs such as file capabilities need no privilege), where
	// src and dst share a filesystem, and copies every directory: it keeps
	// a tree aside and puts it back.
	linkFiles bool

	links map[fileID]string // src inode of a hardlinked file → its first relative path

	// record, when set, receives every non-directory as synced (src is the
	// root, dst a snapshot); known, when set, is such a record of an
	// earlier sync the other way: a path whose snapshot file is still the
	// recorded one and whose root file is unchanged since is equal without
	// reading either.
	record, known *syncedTree
}

type fileID struct{ dev, ino uint64 }

// syncedTree is, by relative path, the files the root and the snapshot at
// dir held equal after a sync. Snapshot files are only ever replaced, never
// changed in place (linkSnapshotter), so a later snapshot's file that is
// still an inode of dir's is the same content; the root's changes all move
// its file's ctime.
type syncedTree struct {
	dir   string
	files map[string]syncedFile
}

// holds reports whether the root's file (dt) still equals the snapshot's
// (st) at rel as recorded. dir's file is looked up again: while it has the
// inode, no other file can have been given that number.
func (k *syncedTree) holds(rel string, st, dt *unix.Stat_t) bool {
	f, ok := k.files[rel]
	if !ok || f.snapshot != stampSnapshot(st) || f.root != stampRoot(dt) {
		return false
	}
	var kt unix.Stat_t
	return unix.Lstat(filepath.Join(k.dir, rel), &kt) == nil && stampSnapshot(&kt) == f.snapshot
}

type syncedFile struct {
	snapshot snapshotStamp
	root     rootStamp
}

// snapshotStamp identifies a snapshot's file; its ctime is left out because
// linking it into the next snapshot moves it.
type snapshotStamp struct {
	id             fileID
	size           int64
	mtime          unix.Timespec
	mode, uid, gid uint32
}

type rootStamp struct {
	id    fileID
	ctime unix.Timespec
}

func stampSnapshot(st *unix.Stat_t) snapshotStamp {
	return snapshotStamp{fileID{uint64(st.Dev), st.Ino}, st.Size, st.Mtim, st.Mode, st.Uid, st.Gid}
}

func stampRoot(st *unix.Stat_t) rootStamp {
	return rootStamp{fileID{uint64(st.Dev), st.Ino}, st.Ctim}
}

// syncTree makes dst hold what src holds, as syncer describes.
func syncTree(src, dst string, skip *skipList, unchangedBefore time.Time) error {
	s := &syncer{src: src, dst: dst, skip: skip, unchangedBefore: unchangedBefore, links: map[fileID]string{}}
	return s.dir("")
}

// syncIntoRoot is syncTree from a snapshot into the root, trusting what
// known (may be nil) says the root already holds.
func syncIntoRoot(snapshot, root string, skip *skipList, known *syncedTree) error {
	s := &syncer{src: snapshot, dst: root, skip: skip, links: map[fileID]string{}, known: known}
	return s.dir("")
}

// syncFromRoot is syncTree from the root into a snapshot after a RUN
// started at runStart, returning what the two then hold equal.
func syncFromRoot(root, snapshot string, skip *skipList, runStart time.Time) (*syncedTree, error) {
	record := &syncedTree{dir: snapshot, files: map[string]syncedFile{}}
	s := &syncer{src: root, dst: snapshot, skip: skip, unchangedBefore: runStart, links: map[fileID]string{}, record: record}
	if err := s.dir(""); err != nil {
		return nil, err
	}
	return s.record, nil
}

// linkTree is syncTree placing files as hardlinks of src's where it can.
func linkTree(src, dst string, skip *skipList) error {
	s := &syncer{src: src, dst: dst, skip: skip, linkFiles: true, links: map[fileID]string{}}
	return s.dir("")
}

// dir syncs the entries of directory rel (both sides exist as directories).
func (s *syncer) dir(rel string) error {
	srcNames, err := readNames(filepath.Join(s.src, rel))
	if err != nil {
		return err
	}
	dstNames, err := readNames(filepath.Join(s.dst, rel))
	if err != nil {
		return err
	}
	for _, name := range dstNames {
		child := join(rel, name)
		if !slices.Contains(srcNames, name) && !s.skip.has(child) {
			if err := removeTree(s.dst, child, s.skip); err != nil {
				return err
			}
		}
	}
	for _, name := range srcNames {
		child := join(rel, name)
		if s.skip.has(child) {
			continue
		}
		if err := s.entry(child); err != nil {
			return err
		}
	}
	return nil
}

func (s *syncer) entry(rel string) error {
	srcPath, dstPath := filepath.Join(s.src, rel), filepath.Join(s.dst, rel)
	var st unix.Stat_t
	if err := unix.Lstat(srcPath, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil // gone while we walked (a RUN's background process)
		}
		return &fs.PathError{Op: "lstat", Path: srcPath, Err: err}
	}
	var dt unix.Stat_t
	dstErr := unix.Lstat(dstPath, &dt)
	dstExists := dstErr == nil
	if dstErr != nil && !errors.Is(dstErr, unix.ENOENT) {
		return &fs.PathError{Op: "lstat", Path: dstPath, Err: dstErr}
	}
	mode := st.Mode & unix.S_IFMT

	if mode == unix.S_IFDIR {
		if dstExists && dt.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := removeTree(s.dst, rel, s.skip); err != nil {
				return err
			}
			dstExists = false
		}
		if !dstExists {
			if !s.linkFiles && s.skip.holdsOnlySkipped(s.src, rel) {
				// Left by the container's own mounts (e.g. /etc of
				// /etc/hosts), as a runtime's mount stubs are: not a result.
				return nil
			}
			if err := unix.Mkdir(dstPath, 0o700); err != nil {
				return &fs.PathError{Op: "mkdir", Path: dstPath, Err: err}
			}
		}
		if err := s.dir(rel); err != nil {
			return err
		}
		return s.metadata(srcPath, dstPath, &st, true)
	}

	if mode == unix.S_IFSOCK {
		return nil // a socket is no file content; image layers leave them out too
	}
	if s.record != nil {
		if err := s.file(rel, &st, dstExists, &dt); err != nil {
			return err
		}
		var after unix.Stat_t
		if err := unix.Lstat(dstPath, &after); err != nil {
			return &fs.PathError{Op: "lstat", Path: dstPath, Err: err}
		}
		s.record.files[rel] = syncedFile{snapshot: stampSnapshot(&after), root: stampRoot(&st)}
		return nil
	}
	return s.file(rel, &st, dstExists, &dt)
}

// file syncs the non-directory rel, whose src is st and dst dt.
func (s *syncer) file(rel string, st *unix.Stat_t, dstExists bool, dt *unix.Stat_t) error {
	srcPath, dstPath := filepath.Join(s.src, rel), filepath.Join(s.dst, rel)
	if st.Nlink > 1 {
		id := fileID{uint64(st.Dev), st.Ino}
		if first, ok := s.links[id]; ok {
			return s.link(first, rel, dstExists, dt)
		}
		s.links[id] = rel
	}
	if dstExists && dt.Ino == st.Ino && dt.Dev == st.Dev {
		return nil // the same file
	}
	if dstExists && s.known != nil {
		if s.known.holds(rel, st, dt) {
			return nil
		}
	}
	if dstExists && !s.unchangedBefore.IsZero() && ctime(st).Before(s.unchangedBefore) && sameKind(st, dt) {
		return nil
	}
	if dstExists && sameKind(st, dt) && dt.Nlink == 1 {
		equal, err := sameContent(srcPath, dstPath, st, dt)
		if err != nil {
			return err
		}
		if equal {
			return s.metadata(srcPath, dstPath, st, false)
		}
	}
	return s.replace(rel, st, dstExists && dt.Mode&unix.S_IFMT == unix.S_IFDIR)
}

// link makes dst's rel a hardlink of dst's first, as it is in src.
func (s *syncer) link(first, rel string, dstExists bool, dt *unix.Stat_t) error {
	target := filepath.Join(s.dst, first)
	var ft unix.Stat_t
	if err := unix.Lstat(target, &ft); err != nil {
		return &fs.PathError{Op: "lstat", Path: target, Err: err}
	}
	if dstExists && dt.Ino == ft.Ino && dt.Dev == ft.Dev {
		return nil
	}
	if dstExists && dt.Mode&unix.S_IFMT == unix.S_IFDIR {
		if err := removeTree(s.dst, rel, s.skip); err != nil {
			return err
		}
	}
	return placeAt(filepath.Join(s.dst, rel), func(tmp string) error { return os.Link(target, tmp) })
}

// replace writes src's non-directory rel as a new file at dst and moves it
// over whatever is there.
func (s *syncer) replace(rel string, st *unix.Stat_t, dstIsDir bool) error {
	srcPath, dstPath := filepath.Join(s.src, rel), filepath.Join(s.dst, rel)
	if dstIsDir {
		if err := removeTree(s.dst, rel, s.skip); err != nil {
			return err
		}
	}
	return placeAt(dstPath, func(tmp string) error {
		if s.linkFiles {
			err := os.Link(srcPath, tmp)
			if err == nil {
				// Linking may give the file a new time (a copy-up on
				// fuse-overlayfs); it is the same file, so put its time back.
				return unix.UtimesNanoAt(unix.AT_FDCWD, tmp, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
			}
			// Another filesystem, a file at its link limit, or one the
			// kernel's protected_hardlinks keeps from this user: copied.
			if !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.EMLINK) && !errors.Is(err, unix.EPERM) {
				return err
			}
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			if err := copyFile(srcPath, tmp); err != nil {
				return err
			}
		case unix.S_IFLNK:
			target, err := os.Readlink(srcPath)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, tmp); err != nil {
				return err
			}
		case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
			if err := unix.Mknod(tmp, st.Mode, int(st.Rdev)); err != nil {
				return fmt.Errorf("creating the device or fifo %s: %w (a device node needs CAP_MKNOD)", "/"+rel, err)
			}
		default:
			return fmt.Errorf("unsupported file type %o at %s", st.Mode&unix.S_IFMT, srcPath)
		}
		return s.metadata(srcPath, tmp, st, false)
	})
}

// placeAt removes what is at path (not a directory) and creates the new file
// there with create. It never renames onto a path: fuse-overlayfs loses the
// whiteout of a lower-layer file renamed over, which then reappears once the
// new file is removed. Running binaries and open files stay intact.
func placeAt(path string, create func(target string) error) error {
	var err error
	// Removing a file fuse-overlayfs lost the whiteout of brings the lower
	// one back; removing that one too leaves the path free.
	for range 3 {
		if err = os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err = create(path); !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		if !errors.Is(err, fs.ErrExist) {
			os.Remove(path)
		}
		return err
	}
	return nil
}

// metadata gives dst src's owner, mode, xattrs and times where they differ.
// Owner comes first: chown clears setuid and setgid bits.
func (s *syncer) metadata(srcPath, dstPath string, st *unix.Stat_t, isDir bool) error {
	if dstPath == s.dst || dstPath == filepath.Clean(s.dst) {
		return nil // the roots themselves keep their own metadata
	}
	return copyMetadata(srcPath, dstPath, st, isDir)
}

// copyMetadata gives dstPath src's owner, mode, xattrs and times (st) where
// they differ.
func copyMetadata(srcPath, dstPath string, st *unix.Stat_t, isDir bool) error {
	var dt unix.Stat_t
	if err := unix.Lstat(dstPath, &dt); err != nil {
		return &fs.PathError{Op: "lstat", Path: dstPath, Err: err}
	}
	symlink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if dt.Uid != st.Uid || dt.Gid != st.Gid {
		if err := unix.Lchown(dstPath, int(st.Uid), int(st.Gid)); err != nil {
			return &fs.PathError{Op: "lchown", Path: dstPath, Err: err}
		}
		dt.Mode = 0 // chown may have cleared setuid/setgid: set the mode again
	}
	if !symlink && dt.Mode&0o7777 != st.Mode&0o7777 {
		if err := unix.Chmod(dstPath, st.Mode&0o7777); err != nil {
			return &fs.PathError{Op: "chmod", Path: dstPath, Err: err}
		}
	}
	if err := syncXattrs(srcPath, dstPath); err != nil {
		return err
	}
	if dt.Mtim != st.Mtim || dt.Atim != st.Atim || isDir {
		times := []unix.Timespec{st.Atim, st.Mtim}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, dstPath, times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &fs.PathError{Op: "utimes", Path: dstPath, Err: err}
		}
	}
	return nil
}

// copiedXattr reports the extended attributes a layer carries: user data
// and file capabilities. trusted.* and security labels belong to the host.
func copiedXattr(name string) bool {
	return strings.HasPrefix(name, "user.") || name == "security.capability"
}

func syncXattrs(srcPath, dstPath string) error {
	want, err := xattrs(srcPath)
	if err != nil {
		return err
	}
	have, err := xattrs(dstPath)
	if err != nil {
		return err
	}
	for name := range have {
		if _, ok := want[name]; !ok {
			if err := unix.Lremovexattr(dstPath, name); err != nil {
				return &fs.PathError{Op: "removexattr " + name, Path: dstPath, Err: err}
			}
		}
	}
	for name, value := range want {
		if old, ok := have[name]; ok && bytes.Equal(old, value) {
			continue
		}
		if err := unix.Lsetxattr(dstPath, name, value, 0); err != nil {
			if name == "security.capability" && errors.Is(err, unix.EPERM) {
				// Without CAP_SETFCAP a file keeps no capabilities, as
				// when the base image was unpacked (containerd skips them).
				continue
			}
			return &fs.PathError{Op: "setxattr " + name, Path: dstPath, Err: err}
		}
	}
	return nil
}

// xattrs lists the copied extended attributes of path.
func xattrs(path string) (map[string][]byte, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(path, buf)
	for errors.Is(err, unix.ERANGE) {
		buf = make([]byte, len(buf)*4)
		n, err = unix.Llistxattr(path, buf)
	}
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, &fs.PathError{Op: "listxattr", Path: path, Err: err}
	}
	out := map[string][]byte{}
	for name := range strings.SplitSeq(string(buf[:n]), "\x00") {
		if name == "" || !copiedXattr(name) {
			continue
		}
		value := make([]byte, 256)
		m, err := unix.Lgetxattr(path, name, value)
		for errors.Is(err, unix.ERANGE) {
			value = make([]byte, len(value)*4)
			m, err = unix.Lgetxattr(path, name, value)
		}
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "getxattr " + name, Path: path, Err: err}
		}
		out[name] = value[:m]
	}
	return out, nil
}

// sameKind reports the same file type, and for links and devices the same
// target; regular files still need their contents compared.
func sameKind(a, b *unix.Stat_t) bool {
	if a.Mode&unix.S_IFMT != b.Mode&unix.S_IFMT {
		return false
	}
	switch a.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFLNK:
		return a.Size == b.Size
	case unix.S_IFCHR, unix.S_IFBLK:
		return a.Rdev == b.Rdev
	}
	return true
}

// sameContent compares two files of the same kind and size byte for byte
// (sizes and times can match while contents differ: reproducible trees
// carry one timestamp).
func sameContent(a, b string, st, dt *unix.Stat_t) (bool, error) {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		ta, err := os.Readlink(a)
		if err != nil {
			return false, err
		}
		tb, err := os.Readlink(b)
		return ta == tb, err
	case unix.S_IFREG:
	default:
		return true, nil
	}
	if st.Size == 0 {
		return true, nil
	}
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	bufA, bufB := make([]byte, 128<<10), make([]byte, 128<<10)
	for {
		na, errA := io.ReadFull(fa, bufA)
		nb, errB := io.ReadFull(fb, bufB)
		if na != nb || !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false, nil
		}
		if errA == io.EOF || errA == io.ErrUnexpectedEOF {
			return errB == io.EOF || errB == io.ErrUnexpectedEOF, nil
		}
		if errA != nil {
			return false, errA
		}
		if errB != nil {
			return false, errB
		}
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil { // copy_file_range where it can
		out.Close()
		return err
	}
	return out.Close()
}

// removeTree removes root's rel and everything below it but the skipped
// paths (and the directories holding them).
func removeTree(root, rel string, skip *skipList) error {
	path := filepath.Join(root, rel)
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return os.Remove(path)
	}
	if !skip.hasBelow(rel) {
		return os.RemoveAll(path)
	}
	names, err := readNames(path)
	if err != nil {
		return err
	}
	kept := false
	for _, name := range names {
		child := join(rel, name)
		if skip.has(child) {
			kept = true
			continue
		}
		if err := removeTree(root, child, skip); err != nil {
			return err
		}
	}
	if kept {
		return nil
	}
	// Nothing skipped was in it (an image's empty /tmp): it goes too,
	// unless something skipped is still below.
	if err := os.Remove(path); err != nil && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

func join(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}

func ctime(st *unix.Stat_t) time.Time { return time.Unix(st.Ctim.Unix()) }

// treeTimes records the access and modification times of every entry of
// the tree at root, by relative path.
func treeTimes(root string) (map[string][2]unix.Timespec, error) {
	times := map[string][2]unix.Timespec{}
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: path, Err: err}
		}
		times[rel] = [2]unix.Timespec{st.Atim, st.Mtim}
		return nil
	})
	return times, err
}

// setTreeTimes gives root's entries the recorded times, deepest first so
// that setting a child's time cannot move its directory's.
func setTreeTimes(root string, times map[string][2]unix.Timespec) error {
	paths := make([]string, 0, len(times))
	for rel := range times {
		paths = append(paths, rel)
	}
	slices.SortFunc(paths, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, rel := range paths {
		t := times[rel]
		path := filepath.Join(root, rel)
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, t[:], unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.ENOENT) {
			return &fs.PathError{Op: "utimes", Path: path, Err: err}
		}
	}
	return nil
}
