package embedded

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/diff"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/containerd/v2/pkg/epoch"
	"github.com/containerd/containerd/v2/pkg/labels"
	"github.com/containerd/errdefs"
	kgzip "github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// pathOf is the directory a snapshot's mounts stand for: the
// snapshotter gives one bind of a plain directory, which is used in place.
func pathOf(mounts []mount.Mount) (string, error) {
	if len(mounts) != 1 || (mounts[0].Type != "bind" && mounts[0].Type != "rbind") {
		return "", fmt.Errorf("kiln's mount-free worker needs one bind of a directory, got %+v", mounts)
	}
	return mounts[0].Source, nil
}

// layerApplier unpacks a layer blob into a snapshot's directory: the
// containerd applier without its temporary mount. It notes each layer's
// tar headers on the way, which shaping the image needs again.
type layerApplier struct {
	store   content.Provider
	headers *layerHeaders
}

// layerHeaders are the tar headers of the layers unpacked, by blob digest.
type layerHeaders struct {
	mu     sync.Mutex
	byBlob map[digest.Digest][]*tar.Header
}

func (h *layerHeaders) get(blob digest.Digest) ([]*tar.Header, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hdrs, ok := h.byBlob[blob]
	return hdrs, ok
}

func (h *layerHeaders) put(blob digest.Digest, hdrs []*tar.Header) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.byBlob[blob] = hdrs
}

// headerReader collects the headers of the tar written to it; whatever
// follows a broken tar is drained, so the writer never blocks.
func headerReader(r *io.PipeReader) <-chan []*tar.Header {
	out := make(chan []*tar.Header, 1)
	go func() {
		var hdrs []*tar.Header
		tr := tar.NewReader(r)
		for {
			hdr, err := tr.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					hdrs = nil
				}
				break
			}
			copied := *hdr
			hdrs = append(hdrs, &copied)
		}
		_, err := io.Copy(io.Discard, r)
		if err != nil {
			hdrs = nil
		}
		out <- hdrs
	}()
	return out
}

func (a layerApplier) Apply(ctx context.Context, desc ocispecs.Descriptor, mounts []mount.Mount, opts ...diff.ApplyOpt) (ocispecs.Descriptor, error) {
	dir, err := pathOf(mounts)
	if err != nil {
		return ocispecs.Descriptor{}, err
	}
	var config diff.ApplyConfig
	for _, o := range opts {
		if err := o(ctx, desc, &config); err != nil {
			return ocispecs.Descriptor{}, err
		}
	}
	ra, err := a.store.ReaderAt(ctx, desc)
	if err != nil {
		return ocispecs.Descriptor{}, fmt.Errorf("reading layer %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	plain, err := compression.DecompressStream(content.NewReader(ra))
	if err != nil {
		return ocispecs.Descriptor{}, fmt.Errorf("decompressing layer %s: %w", desc.Digest, err)
	}
	defer plain.Close()
	digester := digest.Canonical.Digester()
	pr, pw := io.Pipe()
	parsed := headerReader(pr)
	counted := &countingReader{r: io.TeeReader(io.TeeReader(plain, digester.Hash()), pw)}
	if _, err := archive.Apply(ctx, dir, counted); err != nil {
		pw.CloseWithError(err)
		if errors.Is(err, unix.EPERM) {
			return ocispecs.Descriptor{}, fmt.Errorf("unpacking layer %s: %w: the layer holds a device node, which needs CAP_MKNOD, absent from this container (CRI-O's default); as with Kaniko, add the capability or use a base image without device nodes", desc.Digest, err)
		}
		return ocispecs.Descriptor{}, fmt.Errorf("unpacking layer %s: %w", desc.Digest, err)
	}
	if _, err := io.Copy(io.Discard, counted); err != nil {
		pw.CloseWithError(err)
		return ocispecs.Descriptor{}, err
	}
	pw.Close()
	if hdrs := <-parsed; hdrs != nil && a.headers != nil {
		a.headers.put(desc.Digest, hdrs)
	}
	return ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageLayer, Size: counted.n, Digest: digester.Digest()}, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// layerDiffer writes the difference of two snapshot directories as a layer
// blob: the walking differ of containerd without its temporary mounts.
type layerDiffer struct{ store content.Store }

func (d layerDiffer) Compare(ctx context.Context, lower, upper []mount.Mount, opts ...diff.Opt) (ocispecs.Descriptor, error) {
	var config diff.Config
	for _, o := range opts {
		if err := o(&config); err != nil {
			return ocispecs.Descriptor{}, err
		}
	}
	if tm := epoch.FromContext(ctx); tm != nil && config.SourceDateEpoch == nil {
		config.SourceDateEpoch = tm
	}
	upperDir, err := pathOf(upper)
	if err != nil {
		return ocispecs.Descriptor{}, err
	}
	lowerDir := ""
	if len(lower) == 0 {
		// A base layer: the difference from nothing.
		if lowerDir, err = os.MkdirTemp("", "kiln-empty-"); err != nil {
			return ocispecs.Descriptor{}, err
		}
		defer os.Remove(lowerDir)
	} else if lowerDir, err = pathOf(lower); err != nil {
		return ocispecs.Descriptor{}, err
	}

	if config.MediaType == "" {
		config.MediaType = ocispecs.MediaTypeImageLayerGzip
	}
	compressionType := compression.Uncompressed
	switch {
	case config.Compressor != nil:
		compressionType = compression.Unknown
	case config.MediaType == ocispecs.MediaTypeImageLayer:
	case config.MediaType == ocispecs.MediaTypeImageLayerGzip:
		compressionType = compression.Gzip
	case config.MediaType == ocispecs.MediaTypeImageLayerZstd:
		compressionType = compression.Zstd
	default:
		return ocispecs.Descriptor{}, fmt.Errorf("unsupported diff media type %s: %w", config.MediaType, errdefs.ErrNotImplemented)
	}
	var writeOpts []archive.WriteDiffOpt
	if config.SourceDateEpoch != nil {
		writeOpts = append(writeOpts, archive.WithSourceDateEpoch(config.SourceDateEpoch))
	}

	ref := config.Reference
	if ref == "" {
		ref = "kiln-diff-" + randomID()
	}
	w, err := d.store.Writer(ctx, content.WithRef(ref), content.WithDescriptor(ocispecs.Descriptor{MediaType: config.MediaType}))
	if err != nil {
		return ocispecs.Descriptor{}, fmt.Errorf("opening a layer writer: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			w.Close()
			d.store.Abort(ctx, ref)
		}
	}()
	if config.Reference != "" {
		if err := w.Truncate(0); err != nil {
			return ocispecs.Descriptor{}, err
		}
	}
	uncompressed := digest.Canonical.Digester()
	if compressionType == compression.Uncompressed {
		if err := archive.WriteDiff(ctx, io.MultiWriter(w, uncompressed.Hash()), lowerDir, upperDir, writeOpts...); err != nil {
			return ocispecs.Descriptor{}, fmt.Errorf("writing a layer: %w", err)
		}
	} else {
		var compressed io.WriteCloser
		if isGzip(config.MediaType) {
			// kiln re-tars every layer of the image it pushes (compat/shape,
			// at the user's level); this blob is read back once, or kept as
			// a cache layer, so the fastest gzip serves.
			compressed, err = kgzip.NewWriterLevel(w, kgzip.BestSpeed)
		} else if config.Compressor != nil {
			compressed, err = config.Compressor(w, config.MediaType)
		} else {
			compressed, err = compression.CompressStream(w, compressionType)
		}
		if err != nil {
			return ocispecs.Descriptor{}, err
		}
		err = archive.WriteDiff(ctx, io.MultiWriter(compressed, uncompressed.Hash()), lowerDir, upperDir, writeOpts...)
		if cerr := compressed.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return ocispecs.Descriptor{}, fmt.Errorf("writing a layer: %w", err)
		}
	}
	if config.Labels == nil {
		config.Labels = map[string]string{}
	}
	config.Labels[labels.LabelUncompressed] = uncompressed.Digest().String()
	dgst := w.Digest()
	if err := w.Commit(ctx, 0, dgst, content.WithLabels(config.Labels)); err != nil && !errdefs.IsAlreadyExists(err) {
		return ocispecs.Descriptor{}, fmt.Errorf("storing a layer: %w", err)
	}
	committed = true
	info, err := d.store.Info(ctx, dgst)
	if err != nil {
		return ocispecs.Descriptor{}, err
	}
	if _, ok := info.Labels[labels.LabelUncompressed]; !ok {
		if info.Labels == nil {
			info.Labels = map[string]string{}
		}
		info.Labels[labels.LabelUncompressed] = config.Labels[labels.LabelUncompressed]
		if _, err := d.store.Update(ctx, info, "labels."+labels.LabelUncompressed); err != nil {
			return ocispecs.Descriptor{}, err
		}
	}
	return ocispecs.Descriptor{MediaType: config.MediaType, Size: info.Size, Digest: info.Digest}, nil
}

func isGzip(mediaType string) bool {
	return mediaType == ocispecs.MediaTypeImageLayerGzip || mediaType == images.MediaTypeDockerSchema2LayerGzip
}

func randomID() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(errors.New("no randomness"))
	}
	return hex.EncodeToString(b)
}
