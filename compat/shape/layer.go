package shape

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// capabilityXattr is the only extended attribute Kaniko writes.
const capabilityXattr = "SCHILY.xattr.security.capability"

// kanikoIgnored are paths Kaniko never snapshots: its default ignore list and
// the mount points of its container (/proc, /dev, /sys and the bind-mounted
// /etc files). BuildKit's sandbox leaves the same mount points behind as
// empty directories in RUN layers (in rootless and rootful mode alike).
var kanikoIgnored = []string{"etc/mtab", "proc", "dev", "sys", "etc/hosts", "etc/resolv.conf", "etc/hostname"}

// kanikoIgnoredBelow keep the directory but not its content.
var kanikoIgnoredBelow = []string{"tmp/apt-key-gpghome"}

// layerWriter re-tars BuildKit layers the way Kaniko writes its own.
type layerWriter struct {
	workDir string
	// stamp, when set, replaces every time (the --reproducible form).
	stamp *time.Time
	// ignore are extra ignored paths (--ignore-path, /var/run), cleaned.
	ignore []string
	// lower returns the filesystem below the layer, computed on demand.
	lower func() (tree, error)
	// lowerFile copies the data of a file from the filesystem below the
	// layer (Kaniko re-adds symlink targets) to w.
	lowerFile func(p string, w io.Writer) error
	// contextSource describes a build context path (see Options).
	contextSource func(rel string) (Source, error)
	fixes         fixes
	// volumes are the stage's VOLUME paths declared so far (cleaned).
	volumes []string
	// rootMode is the mode of / once a COPY of a context directory onto /
	// changed it; Kaniko's `/` entries show it. 0 is Kaniko's 0755.
	rootMode int64
	// linked are the COPYs BuildKit built with --link (Options.LinkedCopies)
	// and workingDir the WORKDIR they ran in (the image's: only metadata
	// instructions follow them).
	linked     map[*instructions.CopyCommand]bool
	workingDir string
	// moved are the paths linked COPYs wrote a file at that shaping moved
	// into the directory there (intoDirectory), in order.
	moved []string
	// indexSource, when set, records the headers of each layer read (see
	// shaper.indexSource).
	indexSource func(src v1.Layer) (record func(*tar.Header), done func(complete bool))
}

type entry struct {
	hdr     tar.Header
	dataOff int64
}

// ignored reports whether Kaniko's snapshot would skip p. Like Kaniko,
// patterns match component-wise with path.Match (globs work).
func (w *layerWriter) ignored(p string) bool {
	for _, list := range [][]string{kanikoIgnored, w.ignore} {
		for _, ig := range list {
			if matchesPrefix(ig, p) {
				return true
			}
		}
	}
	for _, ig := range kanikoIgnoredBelow {
		if p != ig && matchesPrefix(ig, p) {
			return true
		}
	}
	return false
}

// matchesPrefix reports whether pattern matches p or one of its ancestors.
func matchesPrefix(pattern, p string) bool {
	want := strings.Count(pattern, "/") + 1
	parts := strings.Split(p, "/")
	if len(parts) < want {
		return false
	}
	ok, _ := path.Match(pattern, strings.Join(parts[:want], "/"))
	return ok
}

// layerContent is one BuildKit layer, indexed: headers in memory, file data
// spooled to disk.
type layerContent struct {
	entries   map[string]*entry
	deleted   map[string]bool
	opaque    []string
	spool     *os.File
	newestMod time.Time
}

// read indexes srcs, applied in order into one layer (several only for
// --single-snapshot). The caller closes c.spool.
func (w *layerWriter) read(srcs []v1.Layer) (*layerContent, error) {
	spool, err := os.CreateTemp(w.workDir, "spool-")
	if err != nil {
		return nil, err
	}
	os.Remove(spool.Name()) // unlinked: gone with the descriptor
	c := &layerContent{entries: map[string]*entry{}, deleted: map[string]bool{}, spool: spool}
	for _, src := range srcs {
		if err := w.readInto(c, src); err != nil {
			spool.Close()
			return nil, err
		}
	}
	return c, nil
}

func (w *layerWriter) readInto(c *layerContent, src v1.Layer) (err error) {
	var record func(*tar.Header)
	if w.indexSource != nil {
		var done func(bool)
		record, done = w.indexSource(src)
		defer func() { done(err == nil) }()
	}
	rc, err := uncompressed(src)
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading layer: %w", err)
		}
		if record != nil {
			record(hdr)
		}
		p := cleanPath(hdr.Name)
		dir, base := path.Split(p)
		dir = strings.TrimSuffix(dir, "/")
		switch {
		case p == "":
			continue // Kaniko writes its own root entry
		case base == opaqueWhiteout:
			if !w.ignored(dir) {
				c.removeBelow(dir)
				c.opaque = append(c.opaque, dir)
			}
			continue
		case strings.HasPrefix(base, whiteoutPrefix):
			if gone := path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix)); !w.ignored(gone) {
				c.removeBelow(gone)
				delete(c.entries, gone)
				c.deleted[gone] = true
			}
			continue
		case w.ignored(p):
			continue
		}
		e := &entry{hdr: *hdr}
		if hdr.Typeflag == tar.TypeReg {
			if e.dataOff, err = c.spoolData(tr); err != nil {
				return fmt.Errorf("spooling %s: %w", p, err)
			}
		}
		if hdr.ModTime.After(c.newestMod) {
			c.newestMod = hdr.ModTime
		}
		delete(c.deleted, p) // deleted by an earlier layer, created again
		c.entries[p] = e
	}
	// Drain so a verifying reader checks the digest.
	_, err = io.Copy(io.Discard, rc)
	return err
}

// spoolData appends r to the spool and returns where it starts.
func (c *layerContent) spoolData(r io.Reader) (int64, error) {
	off, err := c.spool.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(c.spool, r)
	return off, err
}

// removeBelow drops the entries under dir (a deleted or opaque directory).
func (c *layerContent) removeBelow(dir string) {
	prefix := dir + "/"
	for p := range c.entries {
		if strings.HasPrefix(p, prefix) {
			delete(c.entries, p)
		}
	}
}

// kanikoKey is Kaniko's sort key: the absolute path, byte order.
func kanikoKey(p string) string { return "/" + p }

func sortedKaniko(paths []string) []string {
	sort.Slice(paths, func(i, j int) bool { return kanikoKey(paths[i]) < kanikoKey(paths[j]) })
	return paths
}

// regroupHardlinks gives each hardlink group's data to the member Kaniko
// writes first (the first in sorted order) and points the others at it.
// Link names stay relative (Kaniko writes them absolute; see
// docs/conformance.md).
func (c *layerContent) regroupHardlinks() {
	groups := map[string][]string{}
	for p, e := range c.entries {
		if e.hdr.Typeflag != tar.TypeLink {
			continue
		}
		target := cleanPath(e.hdr.Linkname)
		if t, ok := c.entries[target]; ok && t.hdr.Typeflag == tar.TypeReg {
			groups[target] = append(groups[target], p)
		}
	}
	for target, links := range groups {
		data := c.entries[target]
		members := sortedKaniko(append(links, target))
		first := members[0]
		for _, m := range members {
			e := c.entries[m]
			if m == first {
				e.hdr.Typeflag, e.hdr.Size, e.hdr.Linkname, e.dataOff = tar.TypeReg, data.hdr.Size, "", data.dataOff
				continue
			}
			e.hdr.Typeflag, e.hdr.Size, e.hdr.Linkname = tar.TypeLink, 0, first
		}
	}
}

// splitHardlinks turns the layer's hardlinks into regular files with their
// target's data: Kaniko's COPY writes each file it copies on its own, so
// hardlinked sources arrive as separate files.
func (c *layerContent) splitHardlinks() {
	for _, e := range c.entries {
		if e.hdr.Typeflag != tar.TypeLink {
			continue
		}
		if t, ok := c.entries[cleanPath(e.hdr.Linkname)]; ok && t.hdr.Typeflag == tar.TypeReg {
			e.hdr.Typeflag, e.hdr.Size, e.hdr.Linkname, e.dataOff = tar.TypeReg, t.hdr.Size, "", t.dataOff
		}
	}
}

// write re-tars src in Kaniko's form into a file in the work directory.
// ok is false when Kaniko would have produced no layer (nothing changed).
func (w *layerWriter) write(srcs []v1.Layer, cmd instructions.Command) (file string, ok bool, err error) {
	c, err := w.read(srcs)
	if err != nil {
		return "", false, err
	}
	defer c.spool.Close()
	var lower tree
	lowerTree := func() (tree, error) {
		if lower == nil {
			lower, err = w.lower()
		}
		return lower, err
	}
	if cp, ok := cmd.(*instructions.CopyCommand); ok && w.linked[cp] {
		t, err := lowerTree()
		if err != nil {
			return "", false, err
		}
		if err := w.asPlainCopy(c, cp, t); err != nil {
			return "", false, err
		}
	}
	if len(c.deleted) > 0 {
		t, err := lowerTree()
		if err != nil {
			return "", false, err
		}
		// A merged --single-snapshot layer deletes what it created itself.
		for gone := range c.deleted {
			if _, existed := t[gone]; !existed {
				delete(c.deleted, gone)
			}
		}
	}
	for _, dir := range c.opaque {
		t, err := lowerTree()
		if err != nil {
			return "", false, err
		}
		// Kaniko lists each deleted child; a replaced directory has no marker.
		for _, child := range t.children(dir) {
			if _, recreated := c.entries[child]; !recreated && !w.ignored(child) {
				c.deleted[child] = true
			}
		}
	}
	if err := w.addUnchangedCopies(c, cmd, lowerTree); err != nil {
		return "", false, err
	}
	if err := w.applyVolumes(c, cmd, lowerTree); err != nil {
		return "", false, err
	}
	if len(c.entries) == 0 && len(c.deleted) == 0 {
		return "", false, nil
	}
	if err := w.applyKanikoRules(c, cmd, lowerTree); err != nil {
		return "", false, err
	}
	if _, isCopy := cmd.(*instructions.CopyCommand); isCopy {
		c.splitHardlinks()
	} else {
		c.regroupHardlinks()
	}
	file, err = w.writeTar(c, lowerTree)
	return file, err == nil, err
}

// writeTar writes c's whiteouts and entries in Kaniko's order and form, each
// after its parent directories, into a file in the work directory.
func (w *layerWriter) writeTar(c *layerContent, lowerTree func() (tree, error)) (string, error) {
	out, err := os.CreateTemp(w.workDir, "layer-*.tar")
	if err != nil {
		return "", err
	}
	defer out.Close()
	buf := bufio.NewWriterSize(out, 1<<20)
	tw := tar.NewWriter(buf)
	written := map[string]bool{}
	var writeParents func(dir string) error
	writeParents = func(dir string) error {
		if written[dir] {
			return nil
		}
		if dir != "" {
			if err := writeParents(cleanPath(path.Dir("/" + dir))); err != nil {
				return err
			}
		}
		written[dir] = true
		hdr, err := w.dirHeader(dir, c, lowerTree)
		if err != nil {
			return err
		}
		return tw.WriteHeader(hdr)
	}

	// Whiteouts first, then everything else, each after its parents.
	for _, gone := range sortedKaniko(keys(c.deleted)) {
		dir := cleanPath(path.Dir("/" + gone))
		if err := writeParents(dir); err != nil {
			return "", err
		}
		if err := tw.WriteHeader(w.whiteoutHeader(gone)); err != nil {
			return "", err
		}
	}
	for _, p := range sortedKaniko(keys(c.entries)) {
		if written[p] {
			continue
		}
		if err := writeParents(cleanPath(path.Dir("/" + p))); err != nil {
			return "", err
		}
		e := c.entries[p]
		written[p] = true
		if err := tw.WriteHeader(w.header(p, &e.hdr)); err != nil {
			return "", fmt.Errorf("writing %s: %w", p, err)
		}
		if e.hdr.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, io.NewSectionReader(c.spool, e.dataOff, e.hdr.Size)); err != nil {
				return "", err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := buf.Flush(); err != nil {
		return "", err
	}
	return out.Name(), out.Close()
}

// applyVolumes snapshots VOLUME directories the way Kaniko does: their
// content is ignored by filesystem walks (RUN, --single-snapshot), and a
// COPY/ADD/WORKDIR snapshot lists every VOLUME path of the stage so far.
func (w *layerWriter) applyVolumes(c *layerContent, cmd instructions.Command, lowerTree func() (tree, error)) error {
	if len(w.volumes) == 0 {
		return nil
	}
	switch cmd.(type) {
	case *instructions.CopyCommand, *instructions.AddCommand, *instructions.WorkdirCommand:
		lower, err := lowerTree()
		if err != nil {
			return err
		}
		for _, v := range w.volumes {
			if _, have := c.entries[v]; have {
				continue
			}
			if h := lower[v]; h != nil && h.Typeflag == tar.TypeDir {
				c.entries[v] = &entry{hdr: *h}
			}
		}
	default:
		inVolume := func(p string) bool {
			for _, v := range w.volumes {
				if strings.HasPrefix(p, v+"/") {
					return true
				}
			}
			return false
		}
		for p := range c.entries {
			if inVolume(p) {
				delete(c.entries, p)
			}
		}
		for p := range c.deleted {
			if inVolume(p) {
				delete(c.deleted, p)
			}
		}
	}
	return nil
}

// dirHeader is an ancestor directory as Kaniko writes it: from this layer,
// else from the filesystem below. The root is always Kaniko's `/` entry.
func (w *layerWriter) dirHeader(dir string, c *layerContent, lowerTree func() (tree, error)) (*tar.Header, error) {
	if dir == "" {
		mode := int64(0o755)
		if w.rootMode != 0 {
			mode = w.rootMode
		}
		return w.header("", &tar.Header{Typeflag: tar.TypeDir, Mode: mode, ModTime: c.newestMod}), nil
	}
	if e, ok := c.entries[dir]; ok {
		return w.header(dir, &e.hdr), nil
	}
	t, err := lowerTree()
	if err != nil {
		return nil, err
	}
	if h, ok := t[dir]; ok && h.Typeflag == tar.TypeDir {
		fixed := *h
		w.fixes.apply(dir, &fixed)
		return w.header(dir, &fixed), nil
	}
	return w.header(dir, &tar.Header{Typeflag: tar.TypeDir, Mode: 0o755, ModTime: c.newestMod}), nil
}

// header is Kaniko's tar header for an entry (tar_util.go AddFileToTar):
// PAX format, empty user and group names, permission and special bits only,
// security.capability as the only xattr; under --reproducible all times
// replaced as mutate.Canonical does.
func (w *layerWriter) header(p string, src *tar.Header) *tar.Header {
	name := p
	switch {
	case p == "":
		name = "/"
	case src.Typeflag == tar.TypeDir:
		name = p + "/"
	}
	hdr := &tar.Header{
		Typeflag: src.Typeflag,
		Name:     name,
		Linkname: src.Linkname,
		Size:     src.Size,
		Mode:     src.Mode & 0o7777,
		Uid:      src.Uid,
		Gid:      src.Gid,
		ModTime:  src.ModTime,
		Devmajor: src.Devmajor,
		Devminor: src.Devminor,
		Format:   tar.FormatPAX,
	}
	if src.Typeflag == tar.TypeLink {
		hdr.Linkname = cleanPath(src.Linkname)
	}
	if src.Typeflag != tar.TypeReg {
		hdr.Size = 0
	}
	hdr.PAXRecords = map[string]string{}
	if cap, ok := src.PAXRecords[capabilityXattr]; ok {
		hdr.PAXRecords[capabilityXattr] = cap
	}
	// Kaniko's --reproducible pass (mutate.Time) re-writes headers read
	// back with the PAX records of its first pass, and Go writes a header
	// holding records only in the PAX form: a long name gets a path record
	// where USTAR's prefix field would otherwise hold part of it.
	if len(name) > tarNameSize || !isASCII(name) {
		hdr.PAXRecords["path"] = name
	}
	if w.stamp != nil {
		hdr.ModTime = *w.stamp
	}
	return hdr
}

// tarNameSize is the size of a tar header's name field.
const tarNameSize = 100

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// whiteoutHeader is Kaniko's whiteout: only a name, everything else zero.
func (w *layerWriter) whiteoutHeader(gone string) *tar.Header {
	dir, base := path.Split(gone)
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: dir + whiteoutPrefix + base, ModTime: time.Unix(0, 0)}
	if w.stamp != nil && !w.stamp.IsZero() {
		hdr.ModTime = *w.stamp
	}
	return hdr
}

// retime re-tars a layer with its times set to t, as go-containerregistry's
// mutate.Time does (byte for byte when t is zero), but streaming to a file instead
// of holding the layer in memory.
func retime(src v1.Layer, t time.Time, workDir string) (string, error) {
	rc, err := uncompressed(src)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	out, err := os.CreateTemp(workDir, "base-*.tar")
	if err != nil {
		return "", err
	}
	defer out.Close()
	buf := bufio.NewWriterSize(out, 1<<20)
	tw := tar.NewWriter(buf)
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("reading layer: %w", err)
		}
		// mutate.Time sets atime and ctime to t too; with Kaniko's zero
		// time that is the same as dropping them, which also keeps an
		// epoch from adding PAX time records.
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = t, time.Time{}, time.Time{}
		if err := tw.WriteHeader(hdr); err != nil {
			return "", fmt.Errorf("writing tar header: %w", err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := io.CopyN(tw, tr, hdr.Size); err != nil {
				return "", fmt.Errorf("writing layer file: %w", err)
			}
		}
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return "", fmt.Errorf("verifying layer: %w", err)
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := buf.Flush(); err != nil {
		return "", err
	}
	return out.Name(), out.Close()
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
