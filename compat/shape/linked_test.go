package shape

import (
	"archive/tar"
	"errors"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const copyToShare = "FROM busybox\nCOPY a /usr/share/app/a\nCMD [\"a\"]\n"

// copyLayers are BuildKit's layers of `COPY a /usr/share/app/a` on
// baseImage: in place (the changed directory only) and with --link (every
// directory on the way, made in an empty layer).
func copyLayers(t *testing.T, linkedDirMode int64) (plain, linked v1.Layer) {
	later := buildTime.Add(time.Hour)
	at := func(e tarEntry) tarEntry { e.hdr.ModTime = later; return e }
	plain = layerOf(t, at(dir("usr/share/", 0o755)), at(dir("usr/share/app/", 0o755)), at(file("usr/share/app/a", "a", 0o644)))
	linked = layerOf(t, at(dir("usr/", linkedDirMode)), at(dir("usr/share/", 0o755)), at(dir("usr/share/app/", 0o755)), at(file("usr/share/app/a", "a", 0o644)))
	return plain, linked
}

func shapeCopy(t *testing.T, l v1.Layer, linked, reproducible bool) (v1.Image, error) {
	img := buildkitAdd(t, baseImage(t), "COPY a /usr/share/app/a # buildkit", l)
	img = buildkitAdd(t, img, `CMD ["a"]`, nil)
	return Kaniko(img, Options{WorkDir: t.TempDir(), Reproducible: reproducible, Dockerfile: []byte(copyToShare), LinkedCopies: linked})
}

func TestLinkedCopyShapesAsThePlainCopy(t *testing.T) {
	plainLayer, linkedLayer := copyLayers(t, 0o755)
	plain, err := shapeCopy(t, plainLayer, false, true)
	if err != nil {
		t.Fatal(err)
	}
	linked, err := shapeCopy(t, linkedLayer, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, plain) != digest(t, linked) {
		t.Error("--reproducible: the linked COPY's image differs from the plain COPY's")
	}

	// Without --reproducible, a directory the COPY only passed through
	// keeps the time it has below, as in the plain COPY's layer.
	linked, err = shapeCopy(t, linkedLayer, true, false)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := linked.Layers()
	for _, h := range readEntries(t, layers[len(layers)-1]) {
		want := buildTime.Add(time.Hour)
		if h.Name == "usr/" {
			want = buildTime
		}
		if h.Name != "/" && !h.ModTime.Equal(want) {
			t.Errorf("%s: time %v, want %v", h.Name, h.ModTime, want)
		}
	}
}

func TestLinkedCopyThatDiffersIsRefused(t *testing.T) {
	// A symlink below is written through by a plain COPY.
	base := buildkitAdd(t, baseImage(t), "RUN ln -s /tmp /usr/run # buildkit",
		layerOf(t, dir("usr/", 0o755), tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "usr/run", Linkname: "/tmp", ModTime: buildTime}}))
	img := buildkitAdd(t, base, "COPY a /usr/run/a # buildkit", layerOf(t, dir("usr/", 0o755), dir("usr/run/", 0o755), file("usr/run/a", "a", 0o644)))
	_, err := Kaniko(img, Options{WorkDir: t.TempDir(), Dockerfile: []byte("FROM busybox\nRUN ln -s /tmp /usr/run\nCOPY a /usr/run/a\n"), LinkedCopies: true})
	if !errors.Is(err, ErrLinkedCopyDiffers) {
		t.Errorf("through a symlink: err = %v, want ErrLinkedCopyDiffers", err)
	}
	// A wildcard onto a directory: the file's name inside is not known.
	img = buildkitAdd(t, baseImage(t), "COPY a* /usr/share # buildkit", layerOf(t, file("usr/share", "a", 0o644)))
	_, err = Kaniko(img, Options{WorkDir: t.TempDir(), Dockerfile: []byte("FROM busybox\nCOPY a* /usr/share\n"), LinkedCopies: true})
	if !errors.Is(err, ErrLinkedCopyDiffers) {
		t.Errorf("a wildcard onto a directory: err = %v, want ErrLinkedCopyDiffers", err)
	}
}

// `COPY a /usr/share` onto the directory below copies into it; with --link
// BuildKit writes the file as /usr/share.
func TestLinkedCopyOfAFileOntoADirectoryPlacesItInside(t *testing.T) {
	later := buildTime.Add(time.Hour)
	at := func(e tarEntry) tarEntry { e.hdr.ModTime = later; return e }
	const dockerfile = "FROM busybox\nCOPY a /usr/share\n"
	shaped := func(l v1.Layer, linked bool) v1.Image {
		t.Helper()
		img, err := Kaniko(buildkitAdd(t, baseImage(t), "COPY a /usr/share # buildkit", l),
			Options{WorkDir: t.TempDir(), Reproducible: true, Dockerfile: []byte(dockerfile), LinkedCopies: linked})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	plain := shaped(layerOf(t, at(dir("usr/share/", 0o755)), at(file("usr/share/a", "a", 0o644))), false)
	linked := shaped(layerOf(t, at(file("usr/share", "a", 0o644))), true)
	if digest(t, plain) != digest(t, linked) {
		t.Error("the linked COPY's image differs from the plain COPY's")
	}

	// A later linked COPY onto the moved path would read BuildKit's file
	// there as the state below: a file to replace.
	img := buildkitAdd(t, baseImage(t), "COPY a /usr/share # buildkit", layerOf(t, at(file("usr/share", "a", 0o644))))
	img = buildkitAdd(t, img, "COPY b /usr/share # buildkit", layerOf(t, file("usr/share", "b", 0o644)))
	_, err := Kaniko(img, Options{WorkDir: t.TempDir(), Dockerfile: []byte(dockerfile + "COPY b /usr/share\n"), LinkedCopies: true})
	if !errors.Is(err, ErrLinkedCopyDiffers) {
		t.Errorf("a linked COPY onto the moved path: err = %v, want ErrLinkedCopyDiffers", err)
	}
}

// `COPY --chown=1000 . .` makes the directories on its way to the
// destination 1000's in its empty layer; below, they are root's and stay so.
func TestLinkedCopyKeepsTheMetadataOfDirectoriesOnTheWay(t *testing.T) {
	plainLayer, otherMode := copyLayers(t, 0o700)
	plain, err := shapeCopy(t, plainLayer, false, true)
	if err != nil {
		t.Fatal(err)
	}
	linked, err := shapeCopy(t, otherMode, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, plain) != digest(t, linked) {
		t.Error("the linked COPY's image has the directory's metadata of its own layer")
	}
}
