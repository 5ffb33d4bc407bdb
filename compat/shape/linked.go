package shape

import (
	"archive/tar"
	"errors"
	"fmt"
	"maps"
	"path"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// ErrLinkedCopyDiffers is a COPY that BuildKit built with --link (into an
// empty layer) where the filesystem below makes that differ from the plain
// COPY Kaniko runs: the build must be solved again without --link.
var ErrLinkedCopyDiffers = errors.New("COPY --link gives another result than COPY here")

// asPlainCopy makes c, the layer of a COPY built with --link, the layer the
// same COPY gives on the filesystem below, or returns ErrLinkedCopyDiffers
// where a path is a directory on one side only (a plain COPY writes
// through a symlink). A single file copied onto a directory below lands
// inside it, as in a plain COPY (intoDirectory). A directory the COPY makes on its
// way to the destination (mkdir -p) that exists below keeps its metadata
// in a plain COPY, and its time unless something was created in it; one
// with nothing created in it is not in a plain COPY's layer at all. The
// copied tree itself gets the source's metadata either way. Only the
// shaped layer is fixed: nothing reads the merged filesystem after the
// stage's last COPYs.
func (w *layerWriter) asPlainCopy(c *layerContent, cmd *instructions.CopyCommand, lower tree) error {
	dest := cmd.DestPath
	if !path.IsAbs(dest) {
		dest = path.Join("/", w.workingDir, dest)
	}
	dest = cleanPath(dest)
	if err := w.notOverMoved(c); err != nil {
		return err
	}
	if err := w.intoDirectory(c, cmd, dest, lower); err != nil {
		return err
	}
	// The destination itself takes a copied directory's metadata.
	destIsCopied, err := w.copiesDirectory(cmd)
	if err != nil {
		return err
	}
	onTheWay := func(p string) bool {
		return p == dest && !destIsCopied || strings.HasPrefix(dest, p+"/")
	}
	createdIn := map[string]bool{}
	for p, e := range c.entries {
		h, ok := lower[p]
		if !ok {
			createdIn[parentOf(p)] = true
			continue
		}
		isDir := e.hdr.Typeflag == tar.TypeDir
		if (h.Typeflag == tar.TypeDir) != isDir {
			return fmt.Errorf("%w: /%s is a %s below", ErrLinkedCopyDiffers, p, typeName(h))
		}
		if !isDir {
			createdIn[parentOf(p)] = true // replaced
		}
	}
	for p, e := range c.entries {
		h := lower[p]
		if h == nil || e.hdr.Typeflag != tar.TypeDir || !onTheWay(p) {
			continue
		}
		if !createdIn[p] {
			delete(c.entries, p)
			continue
		}
		kept := *h
		kept.ModTime = e.hdr.ModTime
		e.hdr = kept
	}
	c.newestMod = time.Time{}
	for e := range maps.Values(c.entries) {
		if e.hdr.ModTime.After(c.newestMod) {
			c.newestMod = e.hdr.ModTime
		}
	}
	return nil
}

// intoDirectory moves the file a linked `COPY file /dir` wrote as /dir
// into the directory /dir is below, under the source's name, as Kaniko's
// and BuildKit's plain COPY place it; /dir then keeps its metadata below.
// Only one source named without wildcards gives that name.
func (w *layerWriter) intoDirectory(c *layerContent, cmd *instructions.CopyCommand, dest string, lower tree) error {
	e, ok := c.entries[dest]
	dir := lower[dest]
	if !ok || e.hdr.Typeflag == tar.TypeDir || dir == nil || dir.Typeflag != tar.TypeDir {
		return nil
	}
	if len(cmd.SourcePaths) != 1 || !namedLiterally(cmd.SourcePaths[0]) || e.hdr.Typeflag != tar.TypeReg {
		return fmt.Errorf("%w: /%s is a directory below", ErrLinkedCopyDiffers, dest)
	}
	inside := path.Join(dest, path.Base(cleanPath(cmd.SourcePaths[0])))
	if h := lower[inside]; h != nil && h.Typeflag != tar.TypeReg {
		return fmt.Errorf("%w: /%s is a %s below", ErrLinkedCopyDiffers, inside, typeName(h))
	}
	c.entries[inside] = e
	kept := *dir
	kept.ModTime = time.Now() // when the file was created in it
	c.entries[dest] = &entry{hdr: kept}
	w.moved = append(w.moved, dest)
	return nil
}

// notOverMoved refuses a linked layer writing at or below a path an earlier
// one moved a file away from: the lower tree, read from BuildKit's layers,
// has a file there where the image has a directory.
func (w *layerWriter) notOverMoved(c *layerContent) error {
	for p := range c.entries {
		for _, m := range w.moved {
			if p == m || strings.HasPrefix(p, m+"/") {
				return fmt.Errorf("%w: /%s is a directory below", ErrLinkedCopyDiffers, m)
			}
		}
	}
	return nil
}

// copiesDirectory reports whether a source of cmd is a directory of the
// build context; false where that is not known (COPY --from, wildcards).
func (w *layerWriter) copiesDirectory(cmd *instructions.CopyCommand) (bool, error) {
	if cmd.From != "" || w.contextSource == nil {
		return false, nil
	}
	for _, src := range cmd.SourcePaths {
		if !namedLiterally(src) {
			continue
		}
		info, err := w.contextSource(cleanPath(src))
		if err != nil {
			continue
		}
		if info.Mode.IsDir() {
			return true, nil
		}
	}
	return false, nil
}

// parentOf is the directory of a slash-separated relative path, "" for
// the root.
func parentOf(name string) string {
	parent := path.Dir(name)
	if parent == "." {
		return ""
	}
	return parent
}

func typeName(h *tar.Header) string {
	switch h.Typeflag {
	case tar.TypeDir:
		return "directory"
	case tar.TypeSymlink:
		return "symlink"
	default:
		return "file"
	}
}
