package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// Registry is a loopback registry keeping blobs on disk: the 512 MiB
// scenario pushes gigabytes over a full run.
type Registry struct {
	Host    string
	server  *http.Server
	traffic *trafficCounter
}

// Traffic is what builds moved through the registry: a figure this
// machine's noise does not change.
type Traffic struct {
	// Pulled counts response bytes (manifests, blobs, cache), Pushed
	// request bytes (uploads, manifest PUTs).
	Pulled, Pushed int64
}

// trafficCounter counts the registry's bytes; builds run one at a time, so
// the difference around a build is that build's.
type trafficCounter struct {
	next           http.Handler
	pulled, pushed atomic.Int64
}

func (c *trafficCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil {
		r.Body = &countingBody{ReadCloser: r.Body, n: &c.pushed}
	}
	c.next.ServeHTTP(&countingWriter{ResponseWriter: w, n: &c.pulled}, r)
}

func (c *trafficCounter) now() Traffic {
	return Traffic{Pulled: c.pulled.Load(), Pushed: c.pushed.Load()}
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

func startRegistry(blobDir string) (*Registry, error) {
	if err := os.MkdirAll(blobDir, 0o755); err != nil {
		return nil, err
	}
	handler := registry.New(
		registry.WithBlobHandler(registry.NewDiskBlobHandler(blobDir)),
		registry.Logger(log.New(io.Discard, "", 0)),
	)
	// 127.0.0.1 is what docker treats as an insecure (plain HTTP) registry
	// without daemon configuration.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	traffic := &trafficCounter{next: handler}
	r := &Registry{Host: ln.Addr().String(), traffic: traffic,
		server: &http.Server{Handler: traffic, ReadHeaderTimeout: time.Minute}}
	go r.server.Serve(ln)
	return r, nil
}

func (r *Registry) Close() error { return r.server.Close() }

func (r *Registry) push(path string, img v1.Image) error {
	ref, err := name.ParseReference(r.Host+"/"+path, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(ref, img)
}

// seedBases pushes the base images the selected scenarios pull.
func seedBases(reg *Registry, tb *testenv.ProgramTB, selected []*Scenario) error {
	needed := map[string]bool{}
	for _, s := range selected {
		for _, b := range s.Bases {
			needed[b] = true
		}
	}
	binary, err := testenv.BusyboxBinary()
	if err != nil {
		return err
	}
	busybox, err := testenv.BusyboxFrom(binary)
	if err != nil {
		return fmt.Errorf("busybox base image: %w", err)
	}
	images := map[string]func() (v1.Image, error){
		baseBusybox: func() (v1.Image, error) { return busybox, nil },
		baseDebian: func() (v1.Image, error) {
			return testenv.Catch(func() v1.Image { return testenv.DebianImage(tb) })
		},
		baseManyFiles: func() (v1.Image, error) { return manyFilesImage(busybox) },
	}
	for path, make := range images {
		if !needed[path] {
			continue
		}
		img, err := make()
		if err != nil {
			return fmt.Errorf("base image %s: %w", path, err)
		}
		if err := reg.push(path, img); err != nil {
			return fmt.Errorf("seeding %s: %w", path, err)
		}
	}
	return nil
}

// Shape of the many-files base layer: 100 directories of 1,000 files.
const (
	manyFilesDirs    = 100
	manyFilesPerDir  = 1000
	manyFilesContent = "a small file in a tree of one hundred thousand\n"
)

// manyFilesImage is busybox plus one layer holding 100,000 small files
// under /srv/tree, the shape of a node_modules or site-packages base.
func manyFilesImage(busybox v1.Image) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: mtime})
	}
	for _, d := range []string{"srv/", "srv/tree/"} {
		if err := dir(d); err != nil {
			return nil, err
		}
	}
	for d := range manyFilesDirs {
		dirName := fmt.Sprintf("srv/tree/d%03d/", d)
		if err := dir(dirName); err != nil {
			return nil, err
		}
		for f := range manyFilesPerDir {
			hdr := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("%sf%04d", dirName, f),
				Mode: 0o644, Size: int64(len(manyFilesContent)), ModTime: mtime}
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, err
			}
			if _, err := io.WriteString(tw, manyFilesContent); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.DockerLayer))
	if err != nil {
		return nil, err
	}
	return mutate.Append(busybox, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: mtime}, CreatedBy: "100,000 small files under /srv/tree"}})
}

// privateBinaries copies kiln's binaries into dir, so a concurrent
// `make build` cannot swap them mid-run (the executor finds buildkitd,
// rootlesskit and kiln-runc next to itself).
func privateBinaries(srcDir, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, b := range []string{"executor", "kiln-helper", "kiln-runc", "buildkitd", "rootlesskit"} {
		src := filepath.Join(srcDir, b)
		if out, err := exec.Command("cp", "--preserve=mode", src, filepath.Join(dir, b)).CombinedOutput(); err != nil {
			return "", fmt.Errorf("copying %s (run make build first): %v: %s", src, err, bytes.TrimSpace(out))
		}
	}
	return filepath.Join(dir, "executor"), nil
}
