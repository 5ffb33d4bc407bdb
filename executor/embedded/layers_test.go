package embedded

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/plugins/content/local"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// storedLayer writes a gzip layer of the given entries into a content store.
func storedLayer(t *testing.T, store content.Store, entries []*tar.Header, truncate bool) ocispecs.Descriptor {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(bytes.Repeat([]byte("x"), int(h.Size))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !truncate {
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	blob := buf.Bytes()
	if truncate {
		blob = blob[:len(blob)/2]
	}
	desc := ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageLayerGzip, Digest: digest.FromBytes(blob), Size: int64(len(blob))}
	if err := content.WriteBlob(context.Background(), store, "layer-"+desc.Digest.Encoded(), bytes.NewReader(blob), desc); err != nil {
		t.Fatal(err)
	}
	return desc
}

func TestLayerApplierNotesTheHeaders(t *testing.T) {
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	entries := []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: 10, Uid: 7},
		{Name: "etc/link", Typeflag: tar.TypeSymlink, Linkname: "passwd"},
	}
	headers := &layerHeaders{byBlob: map[digest.Digest][]*tar.Header{}}
	a := layerApplier{store: store, headers: headers}
	bind := func() []mount.Mount { return []mount.Mount{{Type: "bind", Source: t.TempDir()}} }

	good := storedLayer(t, store, entries, false)
	if _, err := a.Apply(context.Background(), good, bind()); err != nil {
		t.Fatal(err)
	}
	got, ok := headers.get(good.Digest)
	if !ok || len(got) != len(entries) {
		t.Fatalf("noted %d headers (%v), want %d", len(got), ok, len(entries))
	}
	for i, h := range got {
		if h.Name != entries[i].Name || h.Typeflag != entries[i].Typeflag || h.Uid != entries[i].Uid || h.Linkname != entries[i].Linkname {
			t.Errorf("header %d = %s %c uid %d → %q, want %s", i, h.Name, h.Typeflag, h.Uid, h.Linkname, entries[i].Name)
		}
	}

	broken := storedLayer(t, store, entries, true)
	if _, err := a.Apply(context.Background(), broken, bind()); err == nil {
		t.Fatal("a truncated layer applied")
	}
	if _, ok := headers.get(broken.Digest); ok {
		t.Error("headers noted for a layer that did not apply")
	}
}
