package shape

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
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
	switch cmd := cmd.(type) {
	case *instructions.WorkdirCommand:
		workdirParentsRootOwned(c, lower)
	case *instructions.CopyCommand:
		if cmd.From == "" {
			if err := w.copySources(c, lower, cmd.SourcesAndDest, cmd.Chown, cmd.Chmod); err != nil {
				return err
			}
		}
		groupFromUser(c, lower, cmd.Chown)
	case *instructions.AddCommand:
		if err := w.copySources(c, lower, cmd.SourcesAndDest, cmd.Chown, cmd.Chmod); err != nil {
			return err
		}
		groupFromUser(c, lower, cmd.Chown)
	}
	return w.addSymlinkTargets(c, lower)
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

// copySources applies what Kaniko's COPY does with each literal context
// source that BuildKit does otherwise:
//   - a directory source: the destination directory takes the source's
//     mode (and owner without --chown); missing parents are root's with the
//     source's mode less the umask (os.MkdirAll);
//   - a file source without --chown: missing parents take the file's owner;
//   - a symlink source is copied as the link, not the file it points to.
func (w *layerWriter) copySources(c *layerContent, lower tree, sd instructions.SourcesAndDest, chown, chmod string) error {
	if w.contextSource == nil || !path.IsAbs(sd.DestPath) || len(sd.SourceContents) > 0 {
		return nil
	}
	dest := cleanPath(sd.DestPath)
	destIsDir := strings.HasSuffix(sd.DestPath, "/") || len(sd.SourcePaths) > 1
	if h, ok := lower[dest]; ok && h.Typeflag == tar.TypeDir {
		destIsDir = true
	}
	for _, src := range sd.SourcePaths {
		if strings.ContainsAny(src, "*?[$\\") || strings.Contains(src, "://") {
			continue
		}
		rel := cleanPath(src)
		info, err := w.contextSource(rel)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("reading build context %s: %w", rel, err)
		}
		switch {
		case info.Mode.IsDir():
			target := c.entries[dest]
			if target == nil || target.hdr.Typeflag != tar.TypeDir {
				continue
			}
			if chmod == "" {
				target.hdr.Mode = goModeToTar(info.Mode)
			}
			if chown == "" {
				target.hdr.Uid, target.hdr.Gid = info.Uid, info.Gid
			}
			c.ownNewParents(lower, dest, 0, 0, goModeToTar(info.Mode.Perm())&^0o022)
		case info.Mode&fs.ModeSymlink != 0:
			target := dest
			if destIsDir {
				target = path.Join(dest, path.Base(rel))
			}
			e := c.entries[target]
			if e == nil {
				continue
			}
			e.hdr = tar.Header{Typeflag: tar.TypeSymlink, Name: target, Linkname: info.Link, Mode: 0o777, ModTime: e.hdr.ModTime}
			c.ownNewParents(lower, target, 0, 0, 0o755)
		case chown == "":
			target := dest
			if destIsDir {
				target = path.Join(dest, path.Base(rel))
			}
			if c.entries[target] != nil {
				c.ownNewParents(lower, target, info.Uid, info.Gid, 0o755)
			}
		}
	}
	return nil
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
// layers holds it.
func fileFromLayers(layers []v1.Layer, p string, w io.Writer) error {
	for i := len(layers) - 1; i >= 0; i-- {
		found, err := copyFileFromLayer(layers[i], p, w)
		if err != nil || found {
			return err
		}
	}
	return fmt.Errorf("%s: %w", p, fs.ErrNotExist)
}

func copyFileFromLayer(l v1.Layer, p string, w io.Writer) (bool, error) {
	rc, err := l.Uncompressed()
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
