package buildcontext

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

var gzipMagic = []byte{0x1f, 0x8b}

// errEmptyArchive tells the caller there was nothing to read, which on
// tar://stdin almost always means nothing was piped in.
var errEmptyArchive = errors.New("the archive is empty")

// extractTar unpacks a tar stream into dir, which must exist. Kaniko reads
// only gzip tars; an uncompressed tar is accepted too (recognised by the
// missing gzip magic). Every entry is written through an os.Root, so no
// entry, link or chain of symlinks can reach outside dir.
func extractTar(r io.Reader, dir string) error {
	return extractWithin(r, dir, roomIn(dir))
}

// room is what a filesystem can still take; -1 means no known limit.
type room struct{ bytes, files int64 }

func roomIn(dir string) room {
	var fs unix.Statfs_t
	if unix.Statfs(dir, &fs) != nil {
		return room{-1, -1}
	}
	r := room{int64(fs.Bavail) * fs.Bsize, int64(fs.Ffree)}
	if fs.Files == 0 { // no inode limit (btrfs, some overlays)
		r.files = -1
	}
	return r
}

// extractWithin is extractTar refusing, from the headers alone, an archive
// that declares more than space holds.
func extractWithin(r io.Reader, dir string, space room) error {
	buffered := bufio.NewReader(r)
	magic, err := buffered.Peek(len(gzipMagic))
	if len(magic) == 0 && errors.Is(err, io.EOF) {
		return errEmptyArchive
	}
	var stream io.Reader = buffered
	if bytes.Equal(magic, gzipMagic) {
		gz, err := gzip.NewReader(buffered)
		if err != nil {
			return fmt.Errorf("reading gzip: %w", err)
		}
		defer gz.Close()
		stream = gz
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	x := &extractor{root: root, chown: os.Geteuid() == 0, dirs: map[string]*tar.Header{}, maxName: maxPathLen - len(abs) - 1, left: space}
	tr := tar.NewReader(stream)
	for first := true; ; first = false {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && first {
			return fmt.Errorf("the data is not a tar archive or a gzip of one (%w)", err)
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return err
		}
	}
	return x.finishDirs()
}

// maxPathLen is Linux's PATH_MAX: BuildKit reads the context by absolute
// path, so no entry may make a longer one (Kaniko fails on them too).
const maxPathLen = 4096

// LimitError names an archive entry the machine cannot hold: a path too
// long, or more data or files than the disk has room for. It is found
// from the headers, before the data is written, so a tar bomb (a small
// compressed archive declaring terabytes) fails at once.
type LimitError struct {
	Entry  string
	Reason string
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("tar entry %s %s", shortName(e.Entry), e.Reason)
}

// shortName quotes an entry name for a one-line message, cut in the middle
// when long.
func shortName(name string) string {
	if len(name) > 120 {
		name = name[:60] + "…" + name[len(name)-40:]
	}
	return strconv.Quote(name)
}

type extractor struct {
	root  *os.Root
	chown bool
	// maxName is the longest entry name that keeps the absolute path within
	// maxPathLen; left is the room the filesystem had, less what the
	// archive's entries declared so far.
	maxName int
	left    room
	// dirs keeps each directory's header: modes and mtimes are applied at the
	// end, so a read-only directory can still be filled and its mtime is not
	// bumped by the entries written into it.
	dirs map[string]*tar.Header
}

// UnsafeEntryError names an archive entry that would be written outside the
// destination.
type UnsafeEntryError struct {
	Entry  string
	Reason string
}

func (e *UnsafeEntryError) Error() string {
	return fmt.Sprintf("tar entry %s %s; refusing the archive (entries must stay inside the context)", shortName(e.Entry), e.Reason)
}

// entryPath validates a tar name (or hard link target) and returns it in
// the clean, relative form os.Root takes.
func entryPath(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", &UnsafeEntryError{Entry: name, Reason: "is an absolute path"}
	}
	clean := path.Clean(name)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", &UnsafeEntryError{Entry: name, Reason: "climbs out with \"..\""}
	}
	return clean, nil
}

// entryError keeps os.Root's refusals recognisable: they are the archive
// trying to escape through a symlink it planted earlier.
func entryError(name string, err error) error {
	if strings.Contains(err.Error(), "path escapes from parent") {
		return &UnsafeEntryError{Entry: name, Reason: "reaches through a symlink that leads outside the context"}
	}
	return fmt.Errorf("tar entry %s: %w", shortName(name), err)
}

func (x *extractor) entry(hdr *tar.Header, content io.Reader) error {
	name, err := entryPath(hdr.Name)
	if err != nil {
		return err
	}
	if err := x.reserve(hdr, name); err != nil {
		return err
	}
	if err := x.writeEntry(name, hdr, content); err != nil {
		var unsafe *UnsafeEntryError
		if errors.As(err, &unsafe) {
			return err
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("the archive ends inside tar entry %s: it is truncated or corrupt", shortName(hdr.Name))
		}
		return entryError(hdr.Name, err)
	}
	return nil
}

// reserve checks an entry against the limits before anything is written.
func (x *extractor) reserve(hdr *tar.Header, name string) error {
	if len(name) > x.maxName {
		return &LimitError{Entry: hdr.Name, Reason: fmt.Sprintf("is %d bytes long: unpacked, its path would exceed the %d bytes a path may have; shorten the archive's paths", len(name), maxPathLen)}
	}
	if x.left.files >= 0 {
		if x.left.files--; x.left.files < 0 {
			return &LimitError{Entry: hdr.Name, Reason: "is one file more than the filesystem the context is unpacked to has room for (no inodes left); use an archive with fewer files or free space there"}
		}
	}
	if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA {
		if hdr.Size > x.left.bytes && x.left.bytes >= 0 {
			return &LimitError{Entry: hdr.Name, Reason: fmt.Sprintf("declares %d bytes, more than the %d bytes left where the context is unpacked; use a smaller context or free space there", hdr.Size, x.left.bytes)}
		}
		x.left.bytes -= hdr.Size
	}
	return nil
}

func (x *extractor) writeEntry(name string, hdr *tar.Header, content io.Reader) error {
	if name != "." {
		if err := x.root.MkdirAll(path.Dir(name), 0o755); err != nil {
			return err
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := x.makeDir(name); err != nil {
			return err
		}
		x.dirs[name] = hdr
		return nil
	case tar.TypeReg, tar.TypeRegA:
		if err := x.replace(name); err != nil {
			return err
		}
		f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, copyErr := io.Copy(f, content)
		if err := errors.Join(copyErr, f.Close()); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := x.replace(name); err != nil {
			return err
		}
		// The target is stored, never followed here: later entries that go
		// through it are checked by os.Root.
		if err := x.root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
		x.setOwner(name, hdr)
		return nil
	case tar.TypeLink:
		target, err := entryPath(hdr.Linkname)
		if err != nil {
			return &UnsafeEntryError{Entry: hdr.Name, Reason: fmt.Sprintf("is a hard link to %s outside the context", shortName(hdr.Linkname))}
		}
		if err := x.replace(name); err != nil {
			return err
		}
		// A hard link shares the target's inode: no metadata of its own.
		return x.root.Link(target, name)
	default:
		// Devices, FIFOs and PAX/GNU bookkeeping entries carry nothing a build
		// context can use, and devices cannot be created without privileges.
		return nil
	}
	return x.setMetadata(name, hdr)
}

// makeDir creates a directory entry, replacing a non-directory of that name.
func (x *extractor) makeDir(name string) error {
	fi, err := x.root.Lstat(name)
	if err == nil && fi.IsDir() {
		return nil
	}
	if err == nil {
		if err := x.root.Remove(name); err != nil {
			return err
		}
	}
	return x.root.Mkdir(name, 0o700)
}

// replace removes an earlier entry of the same name (the last one wins in a
// tar) so a file never lands through a symlink planted under its name.
func (x *extractor) replace(name string) error {
	fi, err := x.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.IsDir():
		return fmt.Errorf("a directory of that name is already in the archive")
	}
	return x.root.Remove(name)
}

func (x *extractor) setMetadata(name string, hdr *tar.Header) error {
	x.setOwner(name, hdr)
	if err := x.root.Chmod(name, hdr.FileInfo().Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	return x.root.Chtimes(name, accessTime(hdr), hdr.ModTime)
}

// setOwner keeps the archive's ownership when running as root. It is best
// effort: inside a user namespace most IDs are unmapped, and BuildKit's
// COPY assigns its own ownership anyway.
func (x *extractor) setOwner(name string, hdr *tar.Header) {
	if x.chown {
		_ = x.root.Lchown(name, hdr.Uid, hdr.Gid)
	}
}

func (x *extractor) finishDirs() error {
	// Deepest first, so setting a parent's mtime comes after its children.
	names := make([]string, 0, len(x.dirs))
	for name := range x.dirs {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, name := range names {
		if err := x.setMetadata(name, x.dirs[name]); err != nil {
			return entryError(x.dirs[name].Name, err)
		}
	}
	return nil
}

func accessTime(hdr *tar.Header) time.Time {
	if hdr.AccessTime.IsZero() {
		return hdr.ModTime
	}
	return hdr.AccessTime
}
