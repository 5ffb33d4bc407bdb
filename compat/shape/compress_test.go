package shape

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// writeTestTar writes a tar mixing compressible and random content, big
// enough for many deflate blocks.
func writeTestTar(t *testing.T, path string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 40 {
		data := make([]byte, 1<<10+rng.IntN(200<<10))
		if i%3 == 0 {
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
		} else {
			for j := range data {
				data[j] = "kiln layer text "[j%16]
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: filepath.Join("d", string(rune('a'+i%26)), "f"), Mode: 0o644, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestGzipLayerMatchesLayerFromFileBytes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mt    types.MediaType
		level int
	}{
		{"default level (Kaniko's BestSpeed)", types.DockerLayer, 0},
		{"compression level 6", types.OCILayer, 6},
		{"compression level 9", types.DockerLayer, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "layer.tar")
			writeTestTar(t, src)
			opts := []tarball.LayerOption{tarball.WithMediaType(tc.mt)}
			if tc.level > 0 {
				opts = append(opts, tarball.WithCompressionLevel(tc.level))
			}
			want, err := tarball.LayerFromFile(src, opts...)
			if err != nil {
				t.Fatal(err)
			}
			wantBlob := compressedSHA(t, want)

			got, err := gzipLayer(src, tc.mt, tc.level)
			if err != nil {
				t.Fatalf("gzipLayer: %v", err)
			}
			if _, err := os.Stat(src); !os.IsNotExist(err) {
				t.Errorf("uncompressed spool %s kept (stat: %v)", src, err)
			}
			for _, c := range []struct {
				what      string
				got, want func() (v1.Hash, error)
			}{{"digest", got.Digest, want.Digest}, {"diff ID", got.DiffID, want.DiffID}} {
				g, gerr := c.got()
				w, werr := c.want()
				if gerr != nil || werr != nil || g != w {
					t.Errorf("%s = %v (%v), LayerFromFile's %v (%v)", c.what, g, gerr, w, werr)
				}
			}
			gotMT, _ := got.MediaType()
			if gotMT != tc.mt {
				t.Errorf("media type = %s, want %s", gotMT, tc.mt)
			}
			// The blob read back (as a push would) is the digested bytes.
			if blob := compressedSHA(t, got); blob != wantBlob {
				t.Errorf("compressed bytes sha256 %x, LayerFromFile's %x", blob, wantBlob)
			}
			gotSize, _ := got.Size()
			if wantSize, _ := want.Size(); gotSize != wantSize {
				t.Errorf("size = %d, LayerFromFile's %d", gotSize, wantSize)
			}
			if diffID, _ := got.DiffID(); uncompressedSHA(t, got) != diffID.Hex {
				t.Errorf("Uncompressed() does not hash to the diff ID %s", diffID)
			}
		})
	}
}

func compressedSHA(t *testing.T, l v1.Layer) [32]byte {
	t.Helper()
	return [32]byte(streamSHA(t, l.Compressed))
}

// streamSHA hashes what open gives.
func streamSHA(t *testing.T, open func() (io.ReadCloser, error)) []byte {
	t.Helper()
	rc, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatal(err)
	}
	return h.Sum(nil)
}

func TestFastGzipLayerHoldsTheTar(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "layer.tar")
	writeTestTar(t, src)
	want, err := tarball.LayerFromFile(src)
	if err != nil {
		t.Fatal(err)
	}
	wantDiffID, err := want.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	got, err := fastGzipLayer(src, types.DockerLayer, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diffID, err := got.DiffID(); err != nil || diffID != wantDiffID {
		t.Errorf("diff ID %v (%v), the tar's %v", diffID, err, wantDiffID)
	}
	digest, err := got.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if blob := compressedSHA(t, got); hex.EncodeToString(blob[:]) != digest.Hex {
		t.Errorf("compressed bytes sha256 %x, digest %s", blob, digest)
	}
	if got := uncompressedSHA(t, got); got != wantDiffID.Hex {
		t.Errorf("the stream inflates to %s, want the tar %s", got, wantDiffID)
	}
}

func uncompressedSHA(t *testing.T, l v1.Layer) string {
	t.Helper()
	return hex.EncodeToString(streamSHA(t, l.Uncompressed))
}
