package shape

import (
	"archive/tar"
	"bytes"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type tarEntry struct {
	hdr  tar.Header
	body string
}

func layerOf(t *testing.T, entries ...tarEntry) v1.Layer {
	t.Helper()
	data := tarOf(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func tarOf(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.body))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	tw.Close()
	return buf.Bytes()
}

var buildTime = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func dir(name string, mode int64) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: buildTime}}
}

func file(name, body string, mode int64) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, ModTime: buildTime}, body: body}
}

// baseImage is a base (not built by BuildKit) with PAX and xattr entries.
func baseImage(t *testing.T) v1.Image {
	t.Helper()
	capEntry := file("bin/ping", "ping", 0o755)
	capEntry.hdr.PAXRecords = map[string]string{capabilityXattr: "\x01", "SCHILY.xattr.user.note": "x"}
	capEntry.hdr.Uname, capEntry.hdr.Gname = "root", "root"
	long := file("usr/share/"+string(bytes.Repeat([]byte("n"), 120)), "long", 0o644)
	img, err := mutate.Append(empty.Image,
		mutate.Addendum{Layer: layerOf(t, dir("bin/", 0o755), capEntry, dir("etc/", 0o755), file("etc/passwd", "root:x:0:0", 0o644), dir("tmp/", 0o1777), dir("usr/", 0o755), dir("usr/share/", 0o755), long),
			History: v1.History{CreatedBy: "base rootfs", Author: "someone", Created: v1.Time{Time: buildTime}}},
		mutate.Addendum{History: v1.History{CreatedBy: `CMD ["sh"]`, EmptyLayer: true}},
	)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Author, cf.Container = "amd64", "linux", "someone", "abc"
	cf.Config.Cmd, cf.Config.Hostname = []string{"sh"}, "host"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// buildkitAdd appends a layer with BuildKit's history entry.
func buildkitAdd(t *testing.T, img v1.Image, createdBy string, l v1.Layer) v1.Image {
	t.Helper()
	h := v1.History{CreatedBy: createdBy, Comment: buildkitComment, Created: v1.Time{Time: buildTime}, EmptyLayer: l == nil}
	out, err := mutate.Append(img, mutate.Addendum{Layer: l, History: h})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readEntries(t *testing.T, l v1.Layer) []*tar.Header {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var hdrs []*tar.Header
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
	}
}

func names(hdrs []*tar.Header) []string {
	var out []string
	for _, h := range hdrs {
		out = append(out, h.Name)
	}
	return out
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Base layers under --reproducible must come out byte for byte as
// go-containerregistry's own mutate.Canonical makes them (Kaniko's path).
func TestReproducibleBaseMatchesMutateCanonical(t *testing.T) {
	base := baseImage(t)
	want, err := mutate.Canonical(base)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Kaniko(base, Options{WorkDir: t.TempDir(), Reproducible: true})
	if err != nil {
		t.Fatal(err)
	}
	if w, g := digest(t, want), digest(t, got); w != g {
		wc, _ := want.RawConfigFile()
		gc, _ := got.RawConfigFile()
		t.Fatalf("digest %s, mutate.Canonical gives %s\nconfig: %s\nwant:   %s", g, w, gc, wc)
	}
}

func TestKanikoLayerForm(t *testing.T) {
	base := baseImage(t)
	// BuildKit's per-directory walk order, a hardlink pointing at the
	// path walked first, sandbox mount points, an opaque directory, a
	// non-capability xattr.
	runLayer := layerOf(t,
		dir("app/", 0o755),
		file("app/z-data", "shared", 0o644),
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "app/a-link", Linkname: "app/z-data", Mode: 0o644, ModTime: buildTime}},
		dir("app-data/", 0o700),
		dir("dev/", 0o755),
		dir("proc/", 0o755),
		dir("sys/", 0o755),
		dir("etc/", 0o755),
		file("etc/.wh..wh..opq", "", 0),
		file("etc/group", "root:x:0:", 0o644),
		dir("bin/", 0o755),
		file("bin/.wh.ping", "", 0),
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "setcap", Mode: 0o4755, Uname: "root", ModTime: buildTime,
			PAXRecords: map[string]string{capabilityXattr: "\x02", "SCHILY.xattr.user.other": "y"}}, body: "x"},
	)
	img := buildkitAdd(t, base, "ARG SECRET=hunter2", nil)
	img = buildkitAdd(t, img, "RUN |1 SECRET=hunter2 /bin/sh -c make # buildkit", runLayer)
	img = buildkitAdd(t, img, "RUN |1 SECRET=hunter2 /bin/sh -c true # buildkit", layerOf(t, dir("proc/", 0o755)))
	img = buildkitAdd(t, img, "WORKDIR /app", layerOf(t))
	img = buildkitAdd(t, img, "ENV A=1", nil)
	dockerfile := []byte("FROM busybox\nARG SECRET\nRUN make\nRUN true\nWORKDIR /app\nENV A=1\n")

	got, err := Kaniko(img, Options{WorkDir: t.TempDir(), Reproducible: true, Dockerfile: dockerfile, BuildArgs: []string{"SECRET=hunter2"}})
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := got.Layers()
	if len(layers) != 2 {
		t.Fatalf("got %d layers, want the base and the one RUN that changed something", len(layers))
	}
	hdrs := readEntries(t, layers[1])
	// Whiteouts (with parents) first, then Kaniko's byte order of absolute
	// paths: "/app" < "/app-data" < "/app/a-link" — so parents come first.
	wantNames := []string{"/", "bin/", "bin/.wh.ping", "etc/", "etc/.wh.passwd", "app/", "app-data/", "app/a-link", "app/z-data", "etc/group", "setcap"}
	if g := names(hdrs); !equal(g, wantNames) {
		t.Fatalf("entries %q\nwant    %q", g, wantNames)
	}
	byName := map[string]*tar.Header{}
	for _, h := range hdrs {
		byName[h.Name] = h
		if h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: uname %q gname %q mtime %v, want empty names and time 0", h.Name, h.Uname, h.Gname, h.ModTime)
		}
	}
	if h := byName["app/a-link"]; h.Typeflag != tar.TypeReg || h.Size != 6 {
		t.Errorf("app/a-link (first in Kaniko's order) should carry the data: type %c size %d", h.Typeflag, h.Size)
	}
	if h := byName["app/z-data"]; h.Typeflag != tar.TypeLink || h.Linkname != "app/a-link" {
		t.Errorf("app/z-data should link relatively to app/a-link: type %c link %q", h.Typeflag, h.Linkname)
	}
	if h := byName["setcap"]; h.PAXRecords[capabilityXattr] != "\x02" || h.PAXRecords["SCHILY.xattr.user.other"] != "" || h.Mode != 0o4755 {
		t.Errorf("setcap: records %q mode %o, want only security.capability and mode 4755", h.PAXRecords, h.Mode)
	}
	if h := byName["etc/.wh.passwd"]; h.Mode != 0 || h.Typeflag != tar.TypeReg {
		t.Errorf("whiteout: mode %o type %c", h.Mode, h.Typeflag)
	}

	cf, _ := got.ConfigFile()
	var createdBy []string
	for _, h := range cf.History {
		createdBy = append(createdBy, h.CreatedBy)
		if h.Author != "" || h.Comment != "" || !h.Created.Time.IsZero() {
			t.Errorf("history %q: author %q comment %q created %v", h.CreatedBy, h.Author, h.Comment, h.Created)
		}
	}
	if want := []string{"base rootfs", `CMD ["sh"]`, "RUN make"}; !equal(createdBy, want) {
		t.Fatalf("history %q, want %q", createdBy, want)
	}
	if cf.Config.Hostname != "" || cf.Author != "" || cf.Container != "" || !cf.Created.Time.IsZero() {
		t.Errorf("config keeps host-dependent fields: %+v", cf)
	}
	raw, _ := got.RawConfigFile()
	if bytes.Contains(raw, []byte("hunter2")) {
		t.Errorf("a build-arg value leaked into the config: %s", raw)
	}
}

// Names over 100 bytes or not ASCII: Kaniko writes each entry with PAX
// records (times with nanoseconds), then --reproducible's mutate.Time
// re-writes what it reads back. The shaped layer must be those bytes.
func TestLongAndNonASCIINamesTakeKanikosHeaderForm(t *testing.T) {
	long := "long/" + strings.Repeat("a", 60) + "/" + strings.Repeat("b", 60)
	entries := []tarEntry{dir(long+"/", 0o755), file(long+"/file.txt", "long\n", 0o644), file("naïve-日本.txt", "utf\n", 0o644)}
	parents := []tarEntry{dir("long/", 0o755), dir("long/"+strings.Repeat("a", 60)+"/", 0o755)}
	img := buildkitAdd(t, baseImage(t), "RUN make # buildkit", layerOf(t, append(parents, entries...)...))
	got, err := Kaniko(img, Options{WorkDir: t.TempDir(), Reproducible: true, Dockerfile: []byte("FROM busybox\nRUN make\n")})
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := got.Layers()

	firstPass := time.Date(2026, 3, 4, 5, 6, 7, 891, time.UTC)
	var kaniko []tarEntry
	for _, e := range append(append([]tarEntry{dir("/", 0o755)}, parents...), entries...) {
		e.hdr.Format, e.hdr.ModTime, e.hdr.AccessTime, e.hdr.ChangeTime = tar.FormatPAX, firstPass, firstPass, firstPass
		kaniko = append(kaniko, e)
	}
	written, err := mutate.AppendLayers(empty.Image, layerOf(t, kaniko...))
	if err != nil {
		t.Fatal(err)
	}
	canonical, err := mutate.Time(written, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := canonical.Layers()
	g, err := layers[1].DiffID()
	if err != nil {
		t.Fatal(err)
	}
	if w, _ := want[0].DiffID(); g != w {
		t.Fatalf("layer %s, Kaniko's form %s: entries %q", g, w, names(readEntries(t, layers[1])))
	}
}

func TestWithoutReproducibleKeepsTimesAndKanikoHistory(t *testing.T) {
	img := buildkitAdd(t, baseImage(t), "COPY f /f # buildkit", layerOf(t, file("f", "x", 0o644)))
	got, err := Kaniko(img, Options{WorkDir: t.TempDir(), Dockerfile: []byte("FROM busybox\nCOPY f /f\n")})
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := got.Layers()
	baseLayers, _ := baseImage(t).Layers()
	if a, b := digestOfLayer(t, layers[0]), digestOfLayer(t, baseLayers[0]); a != b {
		t.Errorf("base layer rewritten without --reproducible: %s vs %s", a, b)
	}
	hdrs := readEntries(t, layers[1])
	if g := names(hdrs); !equal(g, []string{"/", "f"}) || !hdrs[1].ModTime.Equal(buildTime) {
		t.Fatalf("entries %q, f mtime %v (want %v)", g, hdrs[1].ModTime, buildTime)
	}
	cf, _ := got.ConfigFile()
	last := cf.History[len(cf.History)-1]
	if last.Author != KanikoAuthor || last.CreatedBy != "COPY f /f" || !last.Created.Time.IsZero() || cf.History[0].Author != "someone" {
		t.Fatalf("history %+v", cf.History)
	}
}

func TestSourceDateEpochStampsEverything(t *testing.T) {
	epoch := int64(1700000000)
	img := buildkitAdd(t, baseImage(t), "COPY f /f # buildkit", layerOf(t, file("f", "x", 0o644)))
	got, err := Kaniko(img, Options{WorkDir: t.TempDir(), Reproducible: true, SourceDateEpoch: &epoch})
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := got.Layers()
	for i, l := range layers {
		for _, h := range readEntries(t, l) {
			_, atime := h.PAXRecords["atime"]
			_, ctime := h.PAXRecords["ctime"]
			if h.ModTime.Unix() != epoch || atime || ctime {
				t.Errorf("layer %d %s: mtime %v records %q", i, h.Name, h.ModTime, h.PAXRecords)
			}
		}
	}
	cf, _ := got.ConfigFile()
	if cf.Created.Unix() != epoch || cf.History[0].Created.Unix() != epoch {
		t.Errorf("created %v, history %v, want %d", cf.Created, cf.History[0].Created, epoch)
	}
}

func TestCreatedByFromBuildkitDropsBuildArgValues(t *testing.T) {
	for in, want := range map[string]string{
		"RUN |2 A=1 B=two /bin/sh -c make all # buildkit": "RUN make all",
		`RUN ["echo","hi"] # buildkit`:                    `RUN ["echo","hi"]`,
		"COPY a /b # buildkit":                            "COPY a /b",
		"WORKDIR /x":                                      "WORKDIR /x",
		"RUN /bin/sh -c echo triggered > /t # buildkit":   "RUN echo triggered > /t",
	} {
		if got := createdByFromBuildkit(in); got != want {
			t.Errorf("%q -> %q, want %q", in, got, want)
		}
	}
}

func digestOfLayer(t *testing.T, l v1.Layer) v1.Hash {
	t.Helper()
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// bigLayer streams a tar with one file of size bytes, never in memory.
func bigLayer(t *testing.T, name string, size int64) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() {
			tw := tar.NewWriter(pw)
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: buildTime}); err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := io.CopyN(tw, zeros{}, size); err != nil {
				pw.CloseWithError(err)
				return
			}
			pw.CloseWithError(tw.Close())
		}()
		return pr, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Kaniko's --reproducible holds each layer in memory (kaniko#862); shaping
// a 1 GiB image must not.
func TestShapingAGigabyteImageStaysSmallInMemory(t *testing.T) {
	const size = 1 << 30
	img := buildkitAdd(t, baseImage(t), "RUN dd # buildkit", bigLayer(t, "big.bin", size))

	var peak uint64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse+ms.StackInuse)
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	got, err := Kaniko(img, Options{WorkDir: t.TempDir(), Reproducible: true, Dockerfile: []byte("FROM busybox\nRUN dd\n")})
	if err == nil {
		_, err = got.Digest() // compresses and hashes every layer
	}
	close(done)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := got.Layers()
	if n := len(layers); n != 2 {
		t.Fatalf("%d layers, want 2", n)
	}
	if peak > 128<<20 {
		t.Fatalf("peak heap %d MiB while shaping a %d MiB image", peak>>20, size>>20)
	}
	t.Logf("peak heap %d MiB for a %d MiB image", peak>>20, size>>20)
}

// A layer BuildKit exported uncompressed (no layer cache to keep it for)
// is published gzip-compressed, as Kaniko's layers are.
func TestUncompressedBuildkitLayerIsPublishedAsGzip(t *testing.T) {
	data := tarOf(t, file("f", "x", 0o644))
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.DockerUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	img := buildkitAdd(t, baseImage(t), "COPY f /f # buildkit", l)
	got, err := Kaniko(img, Options{WorkDir: t.TempDir(), Dockerfile: []byte("FROM busybox\nCOPY f /f\n")})
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := got.Layers()
	shaped := layers[len(layers)-1]
	mt, _ := shaped.MediaType()
	rc, err := shaped.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	magic := make([]byte, 2)
	if _, err := io.ReadFull(rc, magic); err != nil || mt != types.DockerLayer || magic[0] != 0x1f || magic[1] != 0x8b {
		t.Errorf("media type %s, first bytes %x (%v); want a gzip stream as %s", mt, magic, err, types.DockerLayer)
	}
}
