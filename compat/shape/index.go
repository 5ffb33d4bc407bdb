package shape

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// A header index is a BuildKit layer without its file data: the same tar
// entries in the same order, regular files empty with their size in the PAX
// record indexSizeKey, as a tar+gzip layer. Lower trees need nothing else
// (tree.add reads no data and drops PAX records), so with a Memo a layer
// whose bytes were never exported is replaced by its index there.
const indexSizeKey = "KILN.size"

// indexWriter records a layer's headers, as they are read, into an index.
// A header it cannot write leaves no index (the layer is then read itself).
type indexWriter struct {
	out *os.File
	buf *bufio.Writer
	tw  *tar.Writer
	err error
}

func newIndexWriter(workDir string) *indexWriter {
	out, err := os.CreateTemp(workDir, "index-*.tar")
	if err != nil {
		return &indexWriter{err: err}
	}
	buf := bufio.NewWriterSize(out, 1<<16)
	return &indexWriter{out: out, buf: buf, tw: tar.NewWriter(buf)}
}

func (x *indexWriter) add(hdr *tar.Header) {
	if x.err != nil {
		return
	}
	h := *hdr
	h.PAXRecords = nil
	if h.Size != 0 {
		h.PAXRecords = map[string]string{indexSizeKey: strconv.FormatInt(h.Size, 10)}
		h.Size = 0
	}
	h.Format = tar.FormatPAX // keeps sub-second times and large ids
	x.err = x.tw.WriteHeader(&h)
}

// abort drops a partial index.
func (x *indexWriter) abort() {
	if x.out != nil {
		x.out.Close()
		os.Remove(x.out.Name())
	}
}

// finish returns the index as a layer; ok is false when recording failed.
func (x *indexWriter) finish() (l v1.Layer, ok bool) {
	if x.out == nil {
		return nil, false
	}
	name := x.out.Name()
	if x.err == nil {
		x.err = x.tw.Close()
	}
	if x.err == nil {
		x.err = x.buf.Flush()
	}
	if err := x.out.Close(); x.err == nil {
		x.err = err
	}
	if x.err == nil {
		l, x.err = fastGzipLayer(name, types.OCILayer, 0)
	}
	if x.err != nil {
		os.Remove(name)
		return nil, false
	}
	return l, true
}

// readIndex returns the headers an index records, as the layer had them
// (sizes restored).
func readIndex(index v1.Layer) ([]*tar.Header, error) {
	rc, err := uncompressed(index)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var hdrs []*tar.Header
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hdrs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading header index: %w", err)
		}
		if size, ok := hdr.PAXRecords[indexSizeKey]; ok {
			if hdr.Size, err = strconv.ParseInt(size, 10, 64); err != nil {
				return nil, fmt.Errorf("header index: size of %s: %w", hdr.Name, err)
			}
		}
		hdrs = append(hdrs, hdr)
	}
}

// applyLower adds layer i to the lower tree: from the headers the build
// engine noted while unpacking it, or from its index when the memo has one
// (the bytes may not have been exported), else from the layer, recording
// its index for the next build.
func (s *shaper) applyLower(i int) error {
	l := s.layers[i]
	memo := s.opts.Memo
	if memo == nil && s.opts.LayerHeaders == nil {
		return applyLayer(s.lower, l)
	}
	d, err := l.Digest()
	if err != nil {
		return err
	}
	if s.opts.LayerHeaders != nil {
		if hdrs, ok := s.opts.LayerHeaders(d); ok {
			s.addIndexed(i, hdrs)
			if memo != nil {
				if _, ok := memo.Index(d); !ok {
					x := newIndexWriter(s.opts.WorkDir)
					for _, h := range hdrs {
						x.add(h)
					}
					if index, ok := x.finish(); ok {
						memo.RememberIndex(d, index)
					}
				}
			}
			return nil
		}
	}
	if memo == nil {
		return applyLayer(s.lower, l)
	}
	if index, ok := memo.Index(d); ok {
		if hdrs, err := readIndex(index); err == nil {
			s.addIndexed(i, hdrs)
			return nil
		}
		// A broken index only costs reading the layer itself.
		return applyLayer(s.lower, l)
	}
	x := newIndexWriter(s.opts.WorkDir)
	if err := applyRecording(s.lower, l, x.add); err != nil {
		x.abort()
		return err
	}
	if index, ok := x.finish(); ok {
		memo.RememberIndex(d, index)
	}
	return nil
}

// addIndexed adds layer i to the lower tree from its headers; its file data
// is then read only where the headers list the file.
func (s *shaper) addIndexed(i int, hdrs []*tar.Header) {
	names := make(map[string]bool, len(hdrs))
	for _, h := range hdrs {
		s.lower.add(h)
		names[cleanPath(h.Name)] = true
	}
	if s.indexed == nil {
		s.indexed = map[int]map[string]bool{}
	}
	s.indexed[i] = names
}

// indexSource returns what readInto records src's headers with, for a
// layer whose index the memo lacks; done hands the index over after a
// complete read.
func (s *shaper) indexSource(src v1.Layer) (record func(*tar.Header), done func(complete bool)) {
	nothing := func(bool) {}
	d, err := src.Digest()
	if err != nil {
		return nil, nothing
	}
	if _, ok := s.opts.Memo.Index(d); ok {
		return nil, nothing
	}
	x := newIndexWriter(s.opts.WorkDir)
	return x.add, func(complete bool) {
		if !complete {
			x.abort()
		} else if index, ok := x.finish(); ok {
			s.opts.Memo.RememberIndex(d, index)
		}
	}
}

// indexLacks says whether layer i's index shows it does not hold p.
func (s *shaper) indexLacks(i int, p string) bool {
	names, ok := s.indexed[i]
	return ok && !names[p]
}
