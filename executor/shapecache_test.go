package executor

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kilnbuild/kiln/compat/shape"
	"github.com/kilnbuild/kiln/internal/testenv"
)

// scopedRegistry is go-containerregistry's registry with blobs kept per
// repository, as real registries keep them, and cross-repository mounts,
// which the in-memory registry lacks (its blobs are visible everywhere).
type scopedRegistry struct {
	store http.Handler

	mu      sync.Mutex
	has     map[string]bool // "repo@digest"
	mounts  []string        // "from -> repo digest"
	uploads []string        // "repo digest" of committed uploads
	reads   []string        // "repo digest" of blob downloads
}

var (
	blobPathRE   = regexp.MustCompile(`^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$`)
	uploadPathRE = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/`)
)

func newScopedRegistry(t *testing.T) (*scopedRegistry, string) {
	s := &scopedRegistry{store: registry.New(registry.Logger(log.New(io.Discard, "", 0))), has: map[string]bool{}}
	server := httptest.NewServer(s)
	t.Cleanup(server.Close)
	return s, strings.TrimPrefix(server.URL, "http://")
}

func (s *scopedRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := blobPathRE.FindStringSubmatch(r.URL.Path); m != nil {
		if !s.has[m[1]+"@"+m[2]] {
			http.Error(w, "blob unknown to this repository", http.StatusNotFound)
			return
		}
		if r.Method == http.MethodGet {
			s.reads = append(s.reads, m[1]+" "+m[2])
		}
	}
	if m := uploadPathRE.FindStringSubmatch(r.URL.Path); m != nil {
		q := r.URL.Query()
		if mount, from := q.Get("mount"), q.Get("from"); r.Method == http.MethodPost && s.has[from+"@"+mount] {
			s.has[m[1]+"@"+mount] = true
			s.mounts = append(s.mounts, from+" -> "+m[1]+" "+mount)
			w.Header().Set("Location", "/v2/"+m[1]+"/blobs/"+mount)
			w.WriteHeader(http.StatusCreated)
			return
		}
		if d := q.Get("digest"); r.Method == http.MethodPut && d != "" {
			s.has[m[1]+"@"+d] = true
			s.uploads = append(s.uploads, m[1]+" "+d)
		}
	}
	s.store.ServeHTTP(w, r)
}

func (s *scopedRegistry) record() (mounts, uploads, reads []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mounts), slices.Clone(s.uploads), slices.Clone(s.reads)
}

// Shaped layers reach the cache repository and later destinations by
// cross-repository mounts from wherever the registry already holds them.
func TestShapedLayersAreMountedNotUploaded(t *testing.T) {
	reg, host := newScopedRegistry(t)
	ctx := context.Background()
	app, err := name.NewRepository(host + "/team/app")
	if err != nil {
		t.Fatal(err)
	}
	cacheTag := app.Registry.Repo("team/app/cache").Tag("kiln-0123456789abcdef" + shapedTagSuffix)
	open := func() *ShapeCache {
		c := openShapeCache(ctx, shapeCacheConfig{stores: []shapeStore{&registryShapes{ref: cacheTag}}, version: "test", log: testenv.Logger(io.Discard)})
		if !c.wait(ctx) {
			t.Fatal("loading the shaped layers did not finish")
		}
		return c
	}

	// A build shaped a layer and pushed it to its destination.
	shaped, err := random.Layer(1024, "application/vnd.docker.image.rootfs.diff.tar.gzip")
	if err != nil {
		t.Fatal(err)
	}
	desc, err := shape.MemoLayerOf(shaped)
	if err != nil {
		t.Fatal(err)
	}
	push := func(repo name.Repository, l v1.Layer) {
		t.Helper()
		img, err := mutate.AppendLayers(empty.Image, l)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(repo.Tag("1"), img); err != nil {
			t.Fatal(err)
		}
	}
	push(app, shaped)
	built := open()
	built.Remember(&shape.MemoEntry{Key: "k", CreatedBy: "RUN make", Layer: &desc}, shaped)
	built.Save(ctx, []name.Repository{app})

	mounts, uploads, _ := reg.record()
	if want := "team/app -> team/app/cache " + desc.Digest.String(); !slices.Contains(mounts, want) {
		t.Errorf("saving did not mount the shaped layer from the destination: mounts %v, want %q", mounts, want)
	}
	if slices.Contains(uploads, "team/app/cache "+desc.Digest.String()) {
		t.Errorf("saving uploaded the shaped layer again: %v", uploads)
	}

	// A fresh build recalls it and pushes it to another repository.
	rebuilt := open()
	_, recalled, ok := rebuilt.Recall("k")
	if !ok {
		t.Fatal("the saved entry is not recalled")
	}
	other, err := name.NewRepository(host + "/team/other")
	if err != nil {
		t.Fatal(err)
	}
	push(other, recalled)
	mounts, uploads, reads := reg.record()
	if want := "team/app/cache -> team/other " + desc.Digest.String(); !slices.Contains(mounts, want) {
		t.Errorf("the push did not mount the recalled layer from the cache repository: mounts %v, want %q", mounts, want)
	}
	for _, r := range append(uploads, reads...) {
		if strings.HasSuffix(r, desc.Digest.String()) && !strings.HasPrefix(r, "team/app ") {
			t.Errorf("the recalled layer was transferred: %s", r)
		}
	}
}
