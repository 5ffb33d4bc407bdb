package shape

import (
	"bufio"
	"errors"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	kgzip "github.com/klauspost/compress/gzip"
)

// uncompressed reads a layer's tar. Shaping reads every lower layer's
// headers, so gzip layers are inflated with klauspost's decoder (the same
// bytes as go-containerregistry's stdlib reader, in less CPU); other media
// types go through the layer's own reader.
func uncompressed(l v1.Layer) (io.ReadCloser, error) {
	mt, err := l.MediaType()
	if err != nil || (mt != types.DockerLayer && mt != types.OCILayer && mt != types.DockerForeignLayer && mt != types.OCIRestrictedLayer) {
		return l.Uncompressed()
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(rc, 64<<10)
	if magic, err := br.Peek(2); err != nil || magic[0] != 0x1f || magic[1] != 0x8b {
		// Not gzip after all: the layer's reader knows what it is.
		rc.Close()
		return l.Uncompressed()
	}
	return gunzip(br, rc)
}

// gunzip inflates r with klauspost's decoder; closing it closes c.
func gunzip(r io.Reader, c io.Closer) (io.ReadCloser, error) {
	zr, err := kgzip.NewReader(r)
	if err != nil {
		c.Close()
		return nil, err
	}
	return readCloser{Reader: zr, close: func() error { return errors.Join(zr.Close(), c.Close()) }}, nil
}

// diffIDLayer is a layer whose DiffID its image's config states: without
// it go-containerregistry inflates a layer of an OCI layout to learn it.
type diffIDLayer struct {
	v1.Layer
	diffID v1.Hash
}

func (l diffIDLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }

// withConfigDiffIDs gives each layer the DiffID the config lists for it.
func withConfigDiffIDs(layers []v1.Layer, cf *v1.ConfigFile) []v1.Layer {
	if len(cf.RootFS.DiffIDs) != len(layers) {
		return layers
	}
	out := make([]v1.Layer, len(layers))
	for i, l := range layers {
		out[i] = diffIDLayer{Layer: l, diffID: cf.RootFS.DiffIDs[i]}
	}
	return out
}
