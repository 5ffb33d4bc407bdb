package shape

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/pgzip"
)

// gzipLayer is tarball.LayerFromFile for a gzip layer, with the same bytes,
// at a third of the CPU: LayerFromFile gzips the tar to compute the digest,
// reads it again for the diff ID, and gzips it again every time the layer
// is read (the push, --tar-path, the OCI layout). This compresses once into
// a file next to the tar (which is then removed), hashing both streams on
// the way. level <= 0 means gzip.BestSpeed, as in LayerFromFile.
func gzipLayer(tarFile string, mediaType types.MediaType, level int) (v1.Layer, error) {
	return spoolGzip(tarFile, mediaType, level, kanikoGzip)
}

// fastGzipLayer is gzipLayer with klauspost's parallel compressor (pgzip,
// 1 MiB blocks on every CPU): a valid stream of other bytes in less CPU and
// wall time, for layers whose digest no one compares with Kaniko's (without
// --reproducible the times in them differ anyway).
func fastGzipLayer(tarFile string, mediaType types.MediaType, level int) (v1.Layer, error) {
	return spoolGzip(tarFile, mediaType, level, fastGzip)
}

type gzipWriter func(w io.Writer, level int) (io.WriteCloser, error)

// kanikoGzip is the writer go-containerregistry uses (stdlib gzip, default
// header); deflate's output does not depend on how the input is split into
// writes.
func kanikoGzip(w io.Writer, level int) (io.WriteCloser, error) { return gzip.NewWriterLevel(w, level) }

func fastGzip(w io.Writer, level int) (io.WriteCloser, error) { return pgzip.NewWriterLevel(w, level) }

func spoolGzip(tarFile string, mediaType types.MediaType, level int, newWriter gzipWriter) (v1.Layer, error) {
	if level <= 0 {
		level = gzip.BestSpeed
	}
	l := &spooledLayer{path: tarFile + ".gz", mediaType: mediaType}
	if err := l.compress(tarFile, level, newWriter); err != nil {
		return nil, err
	}
	if err := os.Remove(tarFile); err != nil {
		return nil, err
	}
	return l, nil
}

// spooledLayer is a v1.Layer served from a gzip file.
type spooledLayer struct {
	path           string
	mediaType      types.MediaType
	digest, diffID v1.Hash
	size           int64
}

func (l *spooledLayer) compress(src string, level int, newWriter gzipWriter) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(l.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	compressed, uncompressed := sha256.New(), sha256.New()
	counted := &countingWriter{w: io.MultiWriter(out, compressed)}
	gw, err := newWriter(counted, level)
	if err != nil {
		return fmt.Errorf("gzip level %d: %w", level, err)
	}
	if _, err := io.Copy(io.MultiWriter(gw, uncompressed), in); err != nil {
		return fmt.Errorf("compressing %s: %w", src, err)
	}
	if err := gw.Close(); err != nil {
		return err
	}
	l.size = counted.n
	l.digest = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(compressed.Sum(nil))}
	l.diffID = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(uncompressed.Sum(nil))}
	return nil
}

func (l *spooledLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *spooledLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *spooledLayer) Size() (int64, error)                { return l.size, nil }
func (l *spooledLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }
func (l *spooledLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
func (l *spooledLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	return gunzip(f, f)
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// isGzipLayer reports media types whose blobs are gzip streams.
func isGzipLayer(mt types.MediaType) bool {
	return mt == types.DockerLayer || mt == types.OCILayer || mt == types.OCIRestrictedLayer
}
