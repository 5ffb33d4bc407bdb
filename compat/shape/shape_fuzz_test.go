package shape

import (
	"archive/tar"
	"bytes"
	"io"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// FuzzShapeRunLayer: any bytes as the layer BuildKit exported for a RUN.
// Shaping either fails or gives layers in Kaniko's form: every name clean
// and inside the root ("/" itself, or relative without ".."), none twice,
// each after its parent directory, hard links to a name inside the layer
// tree, under --reproducible every time zero; and shaping twice gives the
// same image.
func FuzzShapeRunLayer(f *testing.F) {
	seed := func(entries ...tarEntry) []byte { return tarOf(f, entries...) }
	link := func(name, target string, typ byte) tarEntry {
		return tarEntry{hdr: tar.Header{Typeflag: typ, Name: name, Linkname: target, Mode: 0o777, ModTime: buildTime}}
	}
	f.Add(seed(dir("app/", 0o755), file("app/a", "x", 0o644), link("app/h", "app/a", tar.TypeLink)), true)
	f.Add(seed(file("../../escape", "x", 0o644), file("/abs/file", "y", 0o600), link("up", "../../etc/passwd", tar.TypeLink)), true)
	f.Add(seed(dir("etc/", 0o755), file("etc/.wh..wh..opq", "", 0), file("bin/.wh.ping", "", 0), file("tmp/x/.wh.gone", "", 0)), false)
	f.Add(seed(link("loop", "loop", tar.TypeSymlink), link("l2", "/", tar.TypeSymlink), file("proc/self", "x", 0o644), file("dev/null", "", 0o666)), true)
	f.Add(seed(file("a", "1", 0o4755), dir("a/", 0o700), file("a/b", "2", 0o644), file("./a//c/../d", "3", 0o644)), false)
	f.Fuzz(func(t *testing.T, layer []byte, reproducible bool) {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer)), nil })
		if err != nil {
			t.Skip("not a layer")
		}
		img := buildkitAdd(t, baseImage(t), "RUN make # buildkit", l)
		opts := Options{WorkDir: t.TempDir(), Reproducible: reproducible, Dockerfile: []byte("FROM busybox\nRUN make\n")}
		got, err := Kaniko(img, opts)
		if err != nil {
			return
		}
		first, err := got.Digest()
		if err != nil {
			return // the layer's tar is read lazily: a broken one fails here
		}
		opts.WorkDir = t.TempDir()
		again, err := Kaniko(img, opts)
		if err != nil {
			t.Fatalf("a second shaping of the same image fails: %v", err)
		}
		if second, err := again.Digest(); err != nil || second != first {
			t.Errorf("shaping twice: %s then %s (%v)", first, second, err)
		}
		layers, err := got.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range layers {
			checkKanikoLayer(t, i, readEntries(t, l), reproducible)
		}
	})
}

func checkKanikoLayer(t *testing.T, index int, hdrs []*tar.Header, reproducible bool) {
	t.Helper()
	seen := map[string]bool{}
	for _, h := range hdrs {
		name := strings.TrimSuffix(h.Name, "/")
		if h.Name == "/" {
			name = ""
		}
		if (name != "" && path.Clean(name) != name) || strings.HasPrefix(name, "/") || name == ".." || strings.HasPrefix(name, "../") {
			t.Errorf("layer %d: entry %q is not a clean path inside the root", index, h.Name)
		}
		if seen[name] {
			t.Errorf("layer %d: entry %q written twice", index, h.Name)
		}
		seen[name] = true
		if index > 0 && name != "" && !seen[parentOf(name)] {
			t.Errorf("layer %d: entry %q comes before its parent directory", index, h.Name)
		}
		if h.Typeflag == tar.TypeLink && (strings.HasPrefix(h.Linkname, "/") || strings.HasPrefix(path.Clean(h.Linkname), "../") || path.Clean(h.Linkname) == "..") {
			t.Errorf("layer %d: hard link %q leads outside the root: %q", index, h.Name, h.Linkname)
		}
		if reproducible && index > 0 && !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("layer %d: %q has time %v under --reproducible", index, h.Name, h.ModTime)
		}
	}
}
