package shape

import (
	"archive/tar"
	"errors"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
)

// cleanPath turns a tar name ("./a/b/", "/a/b") into "a/b"; the root is "".
func cleanPath(name string) string {
	p := path.Clean("/" + name)
	return strings.TrimPrefix(p, "/")
}

// tree is the flattened filesystem below a layer: path -> header (no data).
// Kaniko takes the metadata of parent directories it adds, and the names a
// whole-directory replacement deletes, from this state.
type tree map[string]*tar.Header

// apply adds one layer's entries, honouring its whiteouts; each header
// also goes to record when it is set.
func (t tree) apply(r io.Reader, record func(*tar.Header)) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if record != nil {
			record(hdr)
		}
		t.add(hdr)
	}
}

// add applies one header.
func (t tree) add(hdr *tar.Header) {
	p := cleanPath(hdr.Name)
	dir, base := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	switch {
	case base == opaqueWhiteout:
		t.removeBelow(dir)
	case strings.HasPrefix(base, whiteoutPrefix):
		gone := path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix))
		delete(t, gone)
		t.removeBelow(gone)
	default:
		if old, ok := t[p]; ok && old.Typeflag == tar.TypeDir && hdr.Typeflag != tar.TypeDir {
			t.removeBelow(p)
		}
		h := *hdr
		h.PAXRecords = nil
		t[p] = &h
	}
}

func (t tree) removeBelow(dir string) {
	prefix := dir + "/"
	if dir == "" {
		prefix = ""
	}
	for p := range t {
		if p != "" && strings.HasPrefix(p, prefix) {
			delete(t, p)
		}
	}
}

// children lists the direct children of dir.
func (t tree) children(dir string) []string {
	var names []string
	for p := range t {
		if p != "" && path.Dir("/"+p) == "/"+dir {
			names = append(names, p)
		}
	}
	return names
}

// hardlinkNames maps each name of a regular file that has several
// (hardlinks) to all of them.
func (t tree) hardlinkNames() map[string][]string {
	links := map[string][]string{}
	for p, h := range t {
		if h.Typeflag != tar.TypeLink {
			continue
		}
		target := cleanPath(h.Linkname)
		if th := t[target]; th != nil && th.Typeflag == tar.TypeReg {
			links[target] = append(links[target], p)
		}
	}
	names := map[string][]string{}
	for target, l := range links {
		all := append(l, target)
		for _, p := range all {
			names[p] = all
		}
	}
	return names
}

// lowerTree flattens layers (headers only).
func lowerTree(layers []v1.Layer) (tree, error) {
	t := tree{}
	for _, l := range layers {
		if err := applyLayer(t, l); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func applyLayer(t tree, l v1.Layer) error {
	return applyRecording(t, l, nil)
}

func applyRecording(t tree, l v1.Layer, record func(*tar.Header)) error {
	rc, err := uncompressed(l)
	if err != nil {
		return err
	}
	defer rc.Close()
	return t.apply(rc, record)
}
