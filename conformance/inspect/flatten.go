package inspect

import (
	"path"
	"sort"
	"strings"
)

// tree is the filesystem seen by a container after applying layers in order.
type tree struct {
	entries map[string]Entry
}

func newTree() *tree { return &tree{entries: map[string]Entry{}} }

// apply applies one layer: its whiteouts hide lower-layer paths first (OCI
// image spec), then its entries are added, replacing what was there.
func (t *tree) apply(layer []Entry) {
	for _, e := range layer {
		dir := path.Dir(e.Path)
		switch e.Type {
		case TypeOpaque:
			t.removeBelow(dir)
		case TypeWhiteout:
			t.remove(path.Join(dir, strings.TrimPrefix(path.Base(e.Path), whiteoutMark)))
		}
	}
	for _, e := range layer {
		if e.Type == TypeOpaque || e.Type == TypeWhiteout {
			continue
		}
		p := treePath(e.Path)
		if old, ok := t.entries[p]; ok && old.Type == TypeDir && e.Type != TypeDir {
			t.removeBelow(p)
		}
		if e.Type == TypeHardlink {
			if target, ok := t.entries[treePath(e.Link)]; ok && target.Type != TypeDir {
				// A hardlink is the same inode: the container sees the target.
				linked := target
				linked.Path = e.Path
				e = linked
			}
		}
		e.Path = p
		t.entries[p] = e
	}
}

func (t *tree) remove(p string) {
	p = treePath(p)
	delete(t.entries, p)
	t.removeBelow(p)
}

func (t *tree) removeBelow(dir string) {
	dir = treePath(dir)
	prefix := dir + "/"
	for p := range t.entries {
		if dir == "" || strings.HasPrefix(p, prefix) {
			if p != dir {
				delete(t.entries, p)
			}
		}
	}
}

// flatten lists the tree sorted by path. The root directory is left out: it is
// builder-specific (Kaniko writes a "/" entry, BuildKit none).
func (t *tree) flatten() []Entry {
	out := make([]Entry, 0, len(t.entries))
	for p, e := range t.entries {
		if p == "" {
			continue
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// treePath is the canonical relative path: no leading "/" or "./", root "".
func treePath(p string) string {
	p = path.Clean("/" + p)
	return strings.TrimPrefix(p, "/")
}

// Flatten applies layers' entries in order, as Inspect does, and lists the
// filesystem a container sees.
func Flatten(layers [][]Entry) []Entry {
	t := newTree()
	for _, l := range layers {
		t.apply(l)
	}
	return t.flatten()
}
