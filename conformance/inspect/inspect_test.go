package inspect

import (
	"archive/tar"
	"bytes"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type tarEntry struct {
	hdr  tar.Header
	body string
}

func layerOf(t *testing.T, entries ...tarEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func dir(name string, mode int64) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode}}
}

func file(name, body string, mode int64, uid, gid int) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Uid: uid, Gid: gid}, body: body}
}

// testImage mimics Kaniko's shapes: a "/" entry, absolute hardlink names,
// whiteouts first, plus an opaque whiteout and a dir replaced by a file.
func testImage(t *testing.T) v1.Image {
	base := layerOf(t,
		dir("/", 0o755),
		dir("app/", 0o755),
		file("app/data.txt", "data", 0o644, 0, 0),
		tarEntry{hdr: tar.Header{Name: "app/hard", Typeflag: tar.TypeLink, Linkname: "/app/data.txt"}},
		tarEntry{hdr: tar.Header{Name: "app/link", Typeflag: tar.TypeSymlink, Linkname: "data.txt", Mode: 0o777}},
		file("bin/tool", "tool", 0o4755, 1000, 50),
		tarEntry{hdr: tar.Header{Name: "bin/cap", Typeflag: tar.TypeReg, Mode: 0o755, Format: tar.FormatPAX,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x02"}}},
		dir("cache/", 0o755),
		file("cache/old", "old", 0o644, 0, 0),
		dir("var/spool/", 0o755),
		file("var/spool/job", "job", 0o600, 0, 0),
		dir("gone/", 0o755),
		file("gone/x", "x", 0o644, 0, 0),
	)
	top := layerOf(t,
		dir("/", 0o755),
		tarEntry{hdr: tar.Header{Name: ".wh.gone", Typeflag: tar.TypeReg}},
		tarEntry{hdr: tar.Header{Name: "app/.wh.link", Typeflag: tar.TypeReg}},
		tarEntry{hdr: tar.Header{Name: "cache/.wh..wh..opq", Typeflag: tar.TypeReg}},
		file("cache/new", "new", 0o644, 0, 0),
		file("var/spool", "now a file", 0o644, 0, 0),
	)
	img, err := mutate.AppendLayers(empty.Image, base, top)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Config.Env = []string{"A=1"}
	cf.History = []v1.History{{CreatedBy: "COPY . /app", Author: "kaniko"}, {CreatedBy: "RUN rm -rf /gone"}}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestInspectEntriesAndFlattening(t *testing.T) {
	got, err := Inspect(testImage(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Layers) != 2 || len(got.DiffIDs) != 2 || got.Layers[0].DiffID != got.DiffIDs[0] {
		t.Fatalf("layers/diff_ids mismatch: %+v", got.DiffIDs)
	}
	base := got.Layers[0].Entries
	if base[0].Path != "/" || base[0].Type != TypeDir {
		t.Errorf("root entry = %+v, want Kaniko's \"/\" dir", base[0])
	}
	byPath := map[string]Entry{}
	for _, e := range base {
		byPath[e.Path] = e
	}
	if e := byPath["app/hard"]; e.Type != TypeHardlink || e.Link != "/app/data.txt" {
		t.Errorf("hardlink entry = %+v", e)
	}
	if e := byPath["bin/tool"]; e.Mode != "4755" || e.UID != 1000 || e.GID != 50 {
		t.Errorf("setuid entry = %+v", e)
	}
	if e := byPath["bin/cap"]; e.Xattrs["security.capability"] != "0102" {
		t.Errorf("xattrs = %v", e.Xattrs)
	}
	if e := byPath["app/data.txt"]; e.Size != 4 || e.SHA256 != "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7" {
		t.Errorf("file entry = %+v", e)
	}
	top := got.Layers[1].Entries
	if top[1].Type != TypeWhiteout || top[3].Type != TypeOpaque {
		t.Errorf("whiteouts not recognised: %+v", top)
	}

	var paths []string
	flat := map[string]Entry{}
	for _, e := range got.Filesystem {
		paths = append(paths, e.Path)
		flat[e.Path] = e
	}
	want := "app,app/data.txt,app/hard,bin/cap,bin/tool,cache,cache/new,var/spool"
	if strings.Join(paths, ",") != want {
		t.Errorf("flattened paths:\n got %s\nwant %s", strings.Join(paths, ","), want)
	}
	if e := flat["app/hard"]; e.Type != TypeFile || e.SHA256 != flat["app/data.txt"].SHA256 {
		t.Errorf("hardlink not resolved to its target: %+v", e)
	}
	if e := flat["var/spool"]; e.Type != TypeFile {
		t.Errorf("dir replaced by file: %+v", e)
	}
	if got.Config.Architecture != "amd64" || got.Config.History[0].Author != "kaniko" || got.Config.Config.Env[0] != "A=1" {
		t.Errorf("config not normalised: %+v", got.Config)
	}
}

func TestDigestsTrackContent(t *testing.T) {
	img := testImage(t)
	a, err := Inspect(img, Options{MaxListedEntries: 6})
	if err != nil {
		t.Fatal(err)
	}
	if a.Layers[0].Entries != nil || a.Layers[0].EntryCount != 13 {
		t.Errorf("big layer should keep only count and digest: %d entries listed, count %d", len(a.Layers[0].Entries), a.Layers[0].EntryCount)
	}
	if a.Layers[1].Entries == nil {
		t.Error("small layer should be listed")
	}
	b, err := Inspect(img, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a.FilesystemDigest != b.FilesystemDigest || a.Layers[0].EntriesDigest != b.Layers[0].EntriesDigest {
		t.Error("digests depend on listing options")
	}
	changed, err := mutate.AppendLayers(img, layerOf(t, file("app/data.txt", "other", 0o644, 0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Inspect(changed, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.FilesystemDigest == b.FilesystemDigest {
		t.Error("filesystem digest ignores a content change")
	}
}

func TestLayout(t *testing.T) {
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img := testImage(t)
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	got, err := Layout(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if got.ManifestDigest != want.String() {
		t.Errorf("digest = %s, want %s", got.ManifestDigest, want)
	}
	if _, err := Layout(t.TempDir(), Options{}); err == nil {
		t.Error("empty directory accepted as OCI layout")
	}
}

// TestWithoutTimes builds one image twice, once with Kaniko's --reproducible
// zero times and once with build times everywhere (mtimes, PAX access and
// change times, config and history created): only the digests may differ.
func TestWithoutTimes(t *testing.T) {
	build := func(at time.Time) *Image {
		stamp := func(e tarEntry) tarEntry {
			e.hdr.ModTime = at
			if !at.IsZero() {
				e.hdr.Format, e.hdr.AccessTime, e.hdr.ChangeTime = tar.FormatPAX, at.Add(time.Second), at.Add(2*time.Second)
			}
			return e
		}
		layer := layerOf(t, stamp(dir("app/", 0o755)), stamp(file("app/x", "x", 0o644, 0, 0)))
		img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, History: v1.History{CreatedBy: "COPY x /app/", Created: v1.Time{Time: at}}})
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.CreatedAt(img, v1.Time{Time: at}); err != nil {
			t.Fatal(err)
		}
		got, err := Inspect(img, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	zero, dated := build(time.Time{}), build(time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC))
	if zero.DiffIDs[0] == dated.DiffIDs[0] || zero.ConfigDigest == dated.ConfigDigest {
		t.Fatal("the two builds do not differ in their times")
	}
	if !dated.Config.History[0].Dated || dated.WithoutTimes().Config.History[0].Dated {
		t.Errorf("history dates: before %+v, after %+v", dated.Config.History, dated.WithoutTimes().Config.History)
	}
	a, b := zero.WithoutTimes(), dated.WithoutTimes()
	if !reflect.DeepEqual(a.Config, b.Config) || !reflect.DeepEqual(a.Layers[0].Entries, b.Layers[0].Entries) ||
		a.Layers[0].EntriesDigest != b.Layers[0].EntriesDigest || a.FilesystemDigest != b.FilesystemDigest {
		t.Errorf("times leak into the inspected form:\n%+v\n%+v", a, b)
	}
	if len(dated.Config.History) == 0 || &dated.WithoutTimes().Config.History[0] == &dated.Config.History[0] {
		t.Error("WithoutTimes shares its history with the original")
	}
}
