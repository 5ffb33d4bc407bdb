package shape

import (
	"bytes"
	"errors"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func readAll(t *testing.T, open func() (io.ReadCloser, error)) []byte {
	t.Helper()
	rc, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUncompressedReadsWhatTheLayerHolds(t *testing.T) {
	gz, err := random.Layer(64<<10, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	want := readAll(t, gz.Uncompressed)
	if got := readAll(t, func() (io.ReadCloser, error) { return uncompressed(gz) }); !bytes.Equal(got, want) {
		t.Errorf("gzip layer read as %d bytes, want %d", len(got), len(want))
	}
	// A gzip media type on bytes that are no gzip stream.
	plain := static.NewLayer([]byte("not gzip at all"), types.DockerLayer)
	want = readAll(t, plain.Uncompressed)
	if got := readAll(t, func() (io.ReadCloser, error) { return uncompressed(plain) }); !bytes.Equal(got, want) {
		t.Errorf("a gzip-typed layer of plain bytes read as %q, want %q", got, want)
	}
}

// unreadable is a layer whose bytes cannot be read.
type unreadable struct{ v1.Layer }

func (unreadable) Compressed() (io.ReadCloser, error)   { return nil, errors.New("read") }
func (unreadable) Uncompressed() (io.ReadCloser, error) { return nil, errors.New("read") }
func (unreadable) DiffID() (v1.Hash, error)             { return v1.Hash{}, errors.New("read to hash") }

func TestConfigDiffIDsNeedNoRead(t *testing.T) {
	l, err := random.Layer(1024, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	want, err := l.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	cf := &v1.ConfigFile{RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{want}}}
	got, err := withConfigDiffIDs([]v1.Layer{unreadable{l}}, cf)[0].DiffID()
	if err != nil || got != want {
		t.Errorf("DiffID = %v, %v; want %v from the config", got, err, want)
	}
	// A config that does not list every layer is not trusted.
	if _, err := withConfigDiffIDs([]v1.Layer{unreadable{l}}, &v1.ConfigFile{})[0].DiffID(); err == nil {
		t.Error("a DiffID came from a config that lists none")
	}
}
