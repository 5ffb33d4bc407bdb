package shape

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// Source is a build context path as Kaniko's COPY sees it (lstat).
type Source struct {
	Mode     fs.FileMode // Go file mode: type, permission and special bits
	Uid, Gid int
	Link     string // symlink target
}

// maxSymlinks bounds symlink resolution, like the kernel's ELOOP.
const maxSymlinks = 40

// applyKanikoRules changes BuildKit's layer where Kaniko's instruction
// semantics give other metadata or other entries.
func (w *layerWriter) applyKanikoRules(c *layerContent, cmd instructions.Command, lowerTree func() (tree, error)) error {
	lower, err := lowerTree()
	if err != nil {
		return err
	}
	for p, e := range c.entries {
		w.fixes.apply(p, &e.hdr)
	}
	before := map[string]meta{}
	for p, e := range c.entries {
		before[p] = metaOf(&e.hdr)
	}
	defer func() {
		for p, e := range c.entries {
			if was, ok := before[p]; ok && was != metaOf(&e.hdr) {
				w.fixes.record(p, was, metaOf(&e.hdr))
			}
		}
	}()
	if err := multipleSourcesNeedDir(lower, cmd); err != nil {
		return err
	}
	if err := w.chownUserExists(lower, cmd); err != nil {
		return err
	}
	writtenThroughLink(c, lower, cmd)
	switch cmd := cmd.(type) {
	case *instructions.RunCommand:
		addLinkPartners(c, lower)
	case *instructions.WorkdirCommand:
		workdirParentsRootOwned(c, lower)
	case *instructions.CopyCommand:
		if cmd.From == "" {
			if err := w.copySources(c, lower, cmd.SourcesAndDest, cmd.Chown, cmd.Chmod); err != nil {
				return err
			}
		}
		groupFromUser(c, lower, cmd.Chown)
		chmodPermissionsOnly(c, cmd.Chmod)
	case *instructions.AddCommand:
		if err := w.copySources(c, lower, cmd.SourcesAndDest, cmd.Chown, cmd.Chmod); err != nil {
			return err
		}
		groupFromUser(c, lower, cmd.Chown)
		chmodPermissionsOnly(c, cmd.Chmod)
	}
	return w.addSymlinkTargets(c, lower)
}

// addLinkPartners: a RUN that changes a file hardlinked below changes, in
// Kaniko, the inode every name of it shares, so all of them join the
// snapshot; BuildKit's copy-up breaks the link and the other names keep
// the old data. The other names join the layer as hardlinks to the
// changed file (regroupHardlinks orders them), as a change in place would
// leave them.
func addLinkPartners(c *layerContent, lower tree) {
	names := lower.hardlinkNames()
	if len(names) == 0 {
		return
	}
	for _, p := range sortedKaniko(keys(c.entries)) {
		e := c.entries[p]
		if e.hdr.Typeflag != tar.TypeReg {
			continue
		}
		for _, other := range names[p] {
			if _, inLayer := c.entries[other]; inLayer || other == p || c.deleted[other] {
				continue
			}
			link := e.hdr
			link.Typeflag, link.Linkname, link.Size = tar.TypeLink, p, 0
			c.entries[other] = &entry{hdr: link}
		}
	}
}

// writtenThroughLink: a COPY/ADD onto a destination that is a symlink
// below writes through it; Kaniko's layer has the file written, BuildKit's
// also the link, unchanged.
func writtenThroughLink(c *layerContent, lower tree, cmd instructions.Command) {
	fc, ok := fileCopyOf(cmd)
	dest := fc.sd.DestPath
	if !ok || !path.IsAbs(dest) {
		return
	}
	p := cleanPath(dest)
	below, e := lower[p], c.entries[p]
	if below == nil || e == nil || below.Typeflag != tar.TypeSymlink || e.hdr.Typeflag != tar.TypeSymlink {
		return
	}
	if below.Linkname == e.hdr.Linkname && below.Uid == e.hdr.Uid && below.Gid == e.hdr.Gid {
		delete(c.entries, p)
	}
}

// chownUserExists fails where Kaniko fails a COPY/ADD --chown naming a user
// the image's /etc/passwd does not have; BuildKit builds.
func (w *layerWriter) chownUserExists(lower tree, cmd instructions.Command) error {
	fc, _ := fileCopyOf(cmd)
	name, _, _ := strings.Cut(fc.chown, ":")
	if name == "" || strings.Contains(name, "$") {
		return nil
	}
	if _, err := strconv.Atoi(name); err == nil {
		return nil
	}
	var passwd bytes.Buffer
	if h := lower["etc/passwd"]; h != nil && h.Typeflag == tar.TypeReg {
		if err := w.lowerFile("etc/passwd", &passwd); err != nil {
			return fmt.Errorf("reading /etc/passwd below the layer: %w", err)
		}
	}
	for _, line := range strings.Split(passwd.String(), "\n") {
		if user, _, ok := strings.Cut(line, ":"); ok && user == name {
			return nil
		}
	}
	return fmt.Errorf("%s --chown=%s: getting user group from chown: user %s is not a uid and does not exist on the system; use a uid or a user of the image's /etc/passwd", strings.ToUpper(cmd.Name()), fc.chown, name)
}

// MultipleSourcesError is Kaniko's error for a COPY/ADD of several sources
// onto a destination that is not a directory.
const MultipleSourcesError = "when specifying multiple sources in a COPY command, destination must be a directory and end in '/'"

// multipleSourcesNeedDir fails where Kaniko fails a COPY/ADD of several
// literal sources whose absolute destination neither ends in "/" nor is a
// directory already; BuildKit creates the directory.
func multipleSourcesNeedDir(lower tree, cmd instructions.Command) error {
	fc, ok := fileCopyOf(cmd)
	if !ok {
		return nil
	}
	sd := fc.sd
	if len(sd.SourcePaths) < 2 || strings.HasSuffix(sd.DestPath, "/") || !path.IsAbs(sd.DestPath) {
		return nil
	}
	for _, src := range sd.SourcePaths {
		if !namedLiterally(src) {
			return nil
		}
	}
	if h, ok := lower[cleanPath(sd.DestPath)]; ok && h.Typeflag == tar.TypeDir {
		return nil
	}
	return fmt.Errorf("%s %s: failed to get files used from context: %s", strings.ToUpper(cmd.Name()), sd.DestPath, MultipleSourcesError)
}

// chmodPermissionsOnly: Kaniko applies --chmod's permission bits only (its
// octal value becomes a Go file mode, where setuid, setgid and sticky are
// other bits), so `--chmod=4755` writes 0755; BuildKit keeps them.
func chmodPermissionsOnly(c *layerContent, chmod string) {
	mode, err := strconv.ParseUint(chmod, 8, 32)
	if err != nil || mode&0o7000 == 0 || mode > 0o7777 {
		return
	}
	for _, e := range c.entries {
		if e.hdr.Typeflag != tar.TypeSymlink && e.hdr.Mode&0o7777 == int64(mode) {
			e.hdr.Mode &^= 0o7000
		}
	}
}

// workdirParentsRootOwned: Kaniko's WORKDIR creates the missing parents with
// os.MkdirAll as root and gives only the directory itself to USER; BuildKit
// gives all of them to USER.
func workdirParentsRootOwned(c *layerContent, lower tree) {
	deepest := ""
	for p, e := range c.entries {
		if _, existed := lower[p]; !existed && e.hdr.Typeflag == tar.TypeDir && len(p) > len(deepest) {
			deepest = p
		}
	}
	for p, e := range c.entries {
		if _, existed := lower[p]; !existed && strings.HasPrefix(deepest, p+"/") {
			e.hdr.Uid, e.hdr.Gid = 0, 0
		}
	}
}

// groupFromUser: Kaniko's --chown=<user> without a group uses the uid as
// gid; BuildKit the user's primary group.
func groupFromUser(c *layerContent, lower tree, chown string) {
	if chown == "" || strings.Contains(chown, ":") {
		return
	}
	for p, e := range c.entries {
		if old, existed := lower[p]; existed && old.Uid == e.hdr.Uid && old.Gid == e.hdr.Gid {
			continue // untouched metadata of an existing directory
		}
		if e.hdr.Uid != 0 {
			e.hdr.Gid = e.hdr.Uid
		}
	}
}

// contextCopy is one literal build context source of a COPY/ADD and the
// path it lands on.
type contextCopy struct {
	rel, target string
	info        Source
}

// contextCopies lists the literal context sources of sd (no wildcards, URLs
// or variables) that exist, with their destinations; none without
// contextSource or for a relative destination (it depends on WORKDIR).
func (w *layerWriter) contextCopies(lower tree, sd instructions.SourcesAndDest) ([]contextCopy, error) {
	if w.contextSource == nil || !path.IsAbs(sd.DestPath) || len(sd.SourceContents) > 0 {
		return nil, nil
	}
	dest, destIsDir := copyDest(lower, sd)
	var copies []contextCopy
	for _, src := range sd.SourcePaths {
		if !namedLiterally(src) || strings.Contains(src, "://") {
			continue
		}
		rel := cleanPath(src)
		info, err := w.contextSource(rel)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("reading build context %s: %w", rel, err)
		}
		target := dest
		if destIsDir && !info.Mode.IsDir() {
			target = path.Join(dest, path.Base(rel))
		}
		copies = append(copies, contextCopy{rel: rel, target: target, info: info})
	}
	return copies, nil
}

// copySources applies what Kaniko's COPY does with each literal context
// source that BuildKit does otherwise:
//   - a directory source: the destination directory takes the source's
//     mode (and owner without --chown); missing parents are root's with the
//     source's mode less the umask (os.MkdirAll);
//   - a file source without --chown: missing parents take the file's owner;
//   - a symlink source is copied as the link, not the file it points to.
func (w *layerWriter) copySources(c *layerContent, lower tree, sd instructions.SourcesAndDest, chown, chmod string) error {
	copies, err := w.contextCopies(lower, sd)
	if err != nil {
		return err
	}
	for _, cp := range copies {
		info, target := cp.info, cp.target
		if chmod == "" {
			if err := w.keepSetidBits(c, cp); err != nil {
				return err
			}
		}
		switch {
		case info.Mode.IsDir():
			if target == "" && chmod == "" {
				w.rootMode = goModeToTar(info.Mode.Perm())
			}
			e := c.entries[target]
			if e == nil || e.hdr.Typeflag != tar.TypeDir {
				continue
			}
			if chmod == "" {
				e.hdr.Mode = goModeToTar(info.Mode)
			}
			if chown == "" {
				e.hdr.Uid, e.hdr.Gid = info.Uid, info.Gid
			}
			c.ownNewParents(lower, target, 0, 0, goModeToTar(info.Mode.Perm())&^0o022)
		case info.Mode&fs.ModeSymlink != 0:
			e := c.entries[target]
			if e == nil || e.hdr.Typeflag == tar.TypeDir {
				// BuildKit followed a link to a directory and copied its
				// contents into the destination directory or onto target.
				into := target
				if e == nil {
					into = path.Dir(target)
				}
				if !w.dropFollowedDir(c, cp, into) {
					continue
				}
				e = &entry{hdr: tar.Header{ModTime: c.newestMod}}
				c.entries[target] = e
			}
			e.hdr = tar.Header{Typeflag: tar.TypeSymlink, Name: target, Linkname: info.Link, Mode: 0o777, ModTime: e.hdr.ModTime}
			c.ownNewParents(lower, target, 0, 0, 0o755)
		case chown == "":
			if c.entries[target] != nil {
				c.ownNewParents(lower, target, info.Uid, info.Gid, 0o755)
			}
		}
	}
	return nil
}

// dropFollowedDir removes from the layer what BuildKit copied into `into`
// by following cp, a context symlink to a context directory: the entries
// whose path below `into` exists below that directory. It reports whether
// cp is such a link.
func (w *layerWriter) dropFollowedDir(c *layerContent, cp contextCopy, into string) bool {
	if path.IsAbs(cp.info.Link) {
		return false
	}
	linked := path.Join(path.Dir(cp.rel), cp.info.Link)
	if info, err := w.contextSource(linked); err != nil || !info.Mode.IsDir() {
		return false
	}
	prefix := into + "/"
	if into == "" || into == "." {
		prefix = ""
	}
	for p := range c.entries {
		rest, under := strings.CutPrefix(p, prefix)
		if !under || rest == "" {
			continue
		}
		if _, err := w.contextSource(path.Join(linked, rest)); err == nil {
			delete(c.entries, p)
		}
	}
	return true
}

// keepSetidBits gives the files cp copied their source's setuid and setgid
// bits back: Kaniko keeps them, rootless BuildKit loses them (its receiver
// writes a file's data after setting its mode, and the kernel clears the
// bits on a write without CAP_FSETID in the initial user namespace).
func (w *layerWriter) keepSetidBits(c *layerContent, cp contextCopy) error {
	restore := func(p, rel string) error {
		e := c.entries[p]
		if e == nil || e.hdr.Typeflag != tar.TypeReg || e.hdr.Mode&0o6000 != 0 {
			return nil
		}
		src := cp.info
		if rel != cp.rel {
			var err error
			if src, err = w.contextSource(rel); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return fmt.Errorf("reading build context %s: %w", rel, err)
			}
		}
		bits := goModeToTar(src.Mode) & 0o6000
		if bits != 0 && src.Mode.IsRegular() && e.hdr.Mode&0o777 == int64(src.Mode.Perm()) {
			e.hdr.Mode |= bits
		}
		return nil
	}
	if !cp.info.Mode.IsDir() {
		return restore(cp.target, cp.rel)
	}
	prefix := cp.target + "/"
	if cp.target == "" {
		prefix = ""
	}
	for p := range c.entries {
		if rest, ok := strings.CutPrefix(p, prefix); ok && p != cp.target {
			if err := restore(p, path.Join(cp.rel, rest)); err != nil {
				return err
			}
		}
	}
	return nil
}

// addUnchangedCopies: Kaniko's COPY/ADD snapshots every file it copied,
// also one identical to what was already there, which BuildKit's diff
// leaves out (a repeated COPY even has an empty layer). Directory sources
// are left as BuildKit's diff has them: their files are not listed here.
func (w *layerWriter) addUnchangedCopies(c *layerContent, cmd instructions.Command, lowerTree func() (tree, error)) error {
	fc, ok := fileCopyOf(cmd)
	if !ok {
		return nil
	}
	sd, fromStage := fc.sd, fc.from != ""
	if w.contextSource == nil && !fromStage {
		return nil
	}
	lower, err := lowerTree()
	if err != nil {
		return err
	}
	var targets []string
	if fromStage {
		targets = stageCopyTargets(lower, sd)
	} else {
		copies, err := w.contextCopies(lower, sd)
		if err != nil {
			return err
		}
		for _, cp := range copies {
			if !cp.info.Mode.IsDir() {
				targets = append(targets, cp.target)
			}
		}
	}
	for _, target := range targets {
		if c.entries[target] != nil {
			continue
		}
		h := lower[target]
		if h == nil || h.Typeflag == tar.TypeDir {
			continue
		}
		e := &entry{hdr: *h}
		if h.Typeflag == tar.TypeReg {
			if e.dataOff, err = c.spool.Seek(0, io.SeekEnd); err != nil {
				return err
			}
			if err := w.lowerFile(target, c.spool); err != nil {
				return fmt.Errorf("reading %s below the layer: %w", target, err)
			}
		}
		if h.ModTime.After(c.newestMod) {
			c.newestMod = h.ModTime
		}
		c.entries[target] = e
	}
	return nil
}

// copyDest is a COPY/ADD destination as a clean path, and whether sources
// land inside it: a trailing slash, several sources, or a directory below.
func copyDest(lower tree, sd instructions.SourcesAndDest) (dest string, isDir bool) {
	dest = cleanPath(sd.DestPath)
	isDir = strings.HasSuffix(sd.DestPath, "/") || len(sd.SourcePaths) > 1
	if h, ok := lower[dest]; ok && h.Typeflag == tar.TypeDir {
		isDir = true
	}
	return dest, isDir
}

// stageCopyTargets lists where the literal sources of a COPY --from (no
// wildcards or variables) land, for an absolute destination. The source
// stage is not at hand: a target that is a file below the layer and not in
// BuildKit's diff is a file source copied unchanged (a directory source
// lands on a directory).
func stageCopyTargets(lower tree, sd instructions.SourcesAndDest) []string {
	if !path.IsAbs(sd.DestPath) {
		return nil
	}
	dest, destIsDir := copyDest(lower, sd)
	var targets []string
	for _, src := range sd.SourcePaths {
		if !namedLiterally(src) {
			continue
		}
		target := dest
		if destIsDir {
			target = path.Join(dest, path.Base(cleanPath(src)))
		}
		targets = append(targets, target)
	}
	return targets
}

// ownNewParents sets the metadata of p's ancestors this layer created.
func (c *layerContent) ownNewParents(lower tree, p string, uid, gid int, mode int64) {
	for dir := path.Dir(p); dir != "." && dir != ""; dir = path.Dir(dir) {
		if _, existed := lower[dir]; existed {
			return
		}
		if e := c.entries[dir]; e != nil && e.hdr.Typeflag == tar.TypeDir {
			e.hdr.Uid, e.hdr.Gid, e.hdr.Mode = uid, gid, mode
		}
	}
}

// goModeToTar turns a Go file mode into tar's permission and special bits.
func goModeToTar(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// addSymlinkTargets: Kaniko's snapshot adds the target of every symlink it
// writes (filepath.EvalSymlinks on the built filesystem) when the target
// exists and is not ignored, with its parent directories.
func (w *layerWriter) addSymlinkTargets(c *layerContent, lower tree) error {
	lookup := func(p string) *tar.Header {
		if e, ok := c.entries[p]; ok {
			return &e.hdr
		}
		for dir := p; dir != "." && dir != ""; dir = path.Dir(dir) {
			if c.deleted[dir] {
				return nil
			}
		}
		return lower[p]
	}
	var links []string
	for p, e := range c.entries {
		if e.hdr.Typeflag == tar.TypeSymlink {
			links = append(links, p)
		}
	}
	for _, link := range sortedKaniko(links) {
		target, ok := evalSymlinks(link, lookup)
		if !ok || target == "" || w.ignored(target) {
			continue
		}
		if _, have := c.entries[target]; have {
			continue
		}
		h := lower[target]
		if h == nil {
			continue
		}
		e := &entry{hdr: *h}
		if h.Typeflag == tar.TypeReg {
			off, err := c.spool.Seek(0, io.SeekEnd)
			if err != nil {
				return err
			}
			if err := w.lowerFile(target, c.spool); err != nil {
				return fmt.Errorf("reading %s below the layer: %w", target, err)
			}
			e.dataOff = off
		}
		c.entries[target] = e
	}
	return nil
}

// evalSymlinks resolves every symlink in p (filepath.EvalSymlinks) against
// lookup; ok is false when a component does not exist.
func evalSymlinks(p string, lookup func(string) *tar.Header) (string, bool) {
	rest := strings.Split(p, "/")
	resolved := ""
	for hops := 0; len(rest) > 0; {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			resolved = cleanPath(path.Dir("/" + resolved))
			continue
		}
		next := cleanPath(path.Join(resolved, name))
		h := lookup(next)
		if h == nil {
			return "", false
		}
		if h.Typeflag != tar.TypeSymlink {
			resolved = next
			continue
		}
		if hops++; hops > maxSymlinks {
			return "", false
		}
		if path.IsAbs(h.Linkname) {
			resolved = ""
		}
		rest = append(strings.Split(h.Linkname, "/"), rest...)
	}
	return resolved, true
}

// fileFromLayers copies the content of regular file p as the topmost of
// layers holds it; lacks, when set, names layers known not to hold p,
// which are not read.
func fileFromLayers(layers []v1.Layer, p string, w io.Writer, lacks func(i int, p string) bool) error {
	for i := len(layers) - 1; i >= 0; i-- {
		if lacks != nil && lacks(i, p) {
			continue
		}
		found, err := copyFileFromLayer(layers[i], p, w)
		if err != nil || found {
			return err
		}
	}
	return fmt.Errorf("%s: %w", p, fs.ErrNotExist)
}

func copyFileFromLayer(l v1.Layer, p string, w io.Writer) (bool, error) {
	rc, err := uncompressed(l)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if cleanPath(hdr.Name) == p && hdr.Typeflag == tar.TypeReg {
			_, err := io.Copy(w, tr)
			return true, err
		}
	}
}

// meta is the metadata Kaniko's rules change.
type meta struct {
	uid, gid int
	mode     int64
}

func metaOf(h *tar.Header) meta { return meta{h.Uid, h.Gid, h.Mode & 0o7777} }

// fixes remember metadata the rules changed: BuildKit's later layers (and
// the filesystem below them) still carry BuildKit's metadata for the same
// unchanged path.
type fixes map[string][2]meta

func (f fixes) record(p string, from, to meta) {
	if prev, ok := f[p]; ok && prev[1] == from {
		from = prev[0]
	}
	f[p] = [2]meta{from, to}
}

// apply corrects h when it still has the metadata BuildKit gave p.
func (f fixes) apply(p string, h *tar.Header) {
	fix, ok := f[p]
	if !ok || metaOf(h) != fix[0] {
		return
	}
	h.Uid, h.Gid, h.Mode = fix[1].uid, fix[1].gid, (h.Mode&^0o7777)|fix[1].mode
}

// namedLiterally reports whether a COPY/ADD source names one path as
// written: no wildcard, variable or escape the rules would have to expand.
func namedLiterally(src string) bool {
	return !strings.ContainsAny(src, "*?[$\\")
}

// fileCopy is what COPY and ADD have in common.
type fileCopy struct {
	sd    instructions.SourcesAndDest
	chown string
	from  string // COPY --from; ADD has none
}

// fileCopyOf reads a COPY or ADD; ok is false for other instructions.
func fileCopyOf(cmd instructions.Command) (fc fileCopy, ok bool) {
	switch cmd := cmd.(type) {
	case *instructions.CopyCommand:
		return fileCopy{sd: cmd.SourcesAndDest, chown: cmd.Chown, from: cmd.From}, true
	case *instructions.AddCommand:
		return fileCopy{sd: cmd.SourcesAndDest, chown: cmd.Chown}, true
	}
	return fileCopy{}, false
}
