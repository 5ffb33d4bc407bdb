package executor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sirupsen/logrus"

	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/compat/shape"
	"github.com/kilnbuild/kiln/executor/helper"
	"github.com/kilnbuild/kiln/flagmap"
)

// The shaped-layer cache: next to each cache tag, kiln keeps a manifest
// "<tag>-shaped" mapping BuildKit's layers to the Kaniko form shaping made
// of them (shape.Memo). Its config lists the entries; its layers are the
// shaped blobs, so the registry keeps them and a push can mount them. A
// rebuild whose BuildKit layers come from the cache then neither re-tars
// them nor uploads them again.
//
// --cache-ttl does not apply: an entry maps one input to the output that
// shaping always gives for it and reuses no build result; a layer BuildKit
// rebuilds has another digest, so no entry matches it.
const shapedTagSuffix = "-shaped"

// shapedConfigType is the config media type of the shaped-layer manifest.
const shapedConfigType types.MediaType = "application/vnd.kiln.shaped-layers.v1+json"

// shapedConfig is the config blob of the shaped-layer manifest.
type shapedConfig struct {
	Entries []*shape.MemoEntry `json:"entries"`
	// Indexes maps BuildKit layer digests to their header indexes
	// (shape.Memo.Index), blobs of the manifest too.
	Indexes map[v1.Hash]shape.MemoLayer `json:"indexes,omitempty"`
}

// shapeStore keeps shaped-layer entries: a registry repository or an OCI
// layout directory.
type shapeStore interface {
	// load returns the stored entries; errNoCache when there are none.
	load(ctx context.Context) (*shapedConfig, error)
	// layer serves a blob of the store.
	layer(d shape.MemoLayer) v1.Layer
	// save replaces the stored entries; the blobs in pushed went to the
	// repositories pushedTo just before, which a registry can mount from.
	save(ctx context.Context, img v1.Image, pushed map[v1.Hash]bool, pushedTo []name.Repository) error
	// writable is false under --no-push-cache.
	writable() bool
	String() string
}

type shapeCacheConfig struct {
	stores  []shapeStore
	version string
	log     logrus.FieldLogger
	// cacheBlobs are the blobs of the imported BuildKit cache, which
	// blobStore serves; nil when no cache is imported.
	cacheBlobs map[v1.Hash]bool
	blobStore  shapeStore
}

// ShapeCache is the shape.Memo of one build: entries loaded from the stores
// while the daemon starts, and the entries this build used, saved after
// publishing.
//
// It also keeps cached layers out of BuildKit's export: a layer the
// imported cache holds and whose header index is known gets a placeholder
// blob in the output layout before the solve, so BuildKit does not copy its
// bytes (its exporter skips blobs the layout has); the image is then read
// with those layers served by the cache (Input), where shaping reads only
// their indexes, a recalled shaped layer replaces them, and a push mounts
// or skips them.
type ShapeCache struct {
	shapeCacheConfig
	loaded chan struct{}

	recalled map[string]recalledEntry
	indexes  map[v1.Hash]recalledIndex
	stored   map[shapeStore]int // entries and indexes each store holds

	used       []usedEntry
	seen       map[string]bool
	reused     int
	newIndexes map[v1.Hash]v1.Layer
	leftOut    map[v1.Hash]bool
	exported   []v1.Hash // BuildKit's layers, bottom first
}

type recalledEntry struct {
	entry *shape.MemoEntry
	store shapeStore
}

type recalledIndex struct {
	desc  shape.MemoLayer
	store shapeStore
}

type usedEntry struct {
	entry *shape.MemoEntry
	layer v1.Layer
	from  shapeStore // the store the entry was recalled from; nil when new
}

// openShapeCache starts loading the stores' entries; nil without stores.
func openShapeCache(ctx context.Context, cfg shapeCacheConfig) *ShapeCache {
	if len(cfg.stores) == 0 {
		return nil
	}
	c := &ShapeCache{shapeCacheConfig: cfg, loaded: make(chan struct{}),
		recalled: map[string]recalledEntry{}, indexes: map[v1.Hash]recalledIndex{}, stored: map[shapeStore]int{},
		seen: map[string]bool{}, newIndexes: map[v1.Hash]v1.Layer{}, leftOut: map[v1.Hash]bool{}}
	go func() {
		defer close(c.loaded)
		for _, st := range cfg.stores {
			c.loadFrom(ctx, st)
		}
	}()
	return c
}

func (c *ShapeCache) loadFrom(ctx context.Context, st shapeStore) {
	stored, err := st.load(ctx)
	switch {
	case errors.Is(err, errNoCache):
		c.log.Debugf("No shaped layers at %s yet", st)
		return
	case err != nil:
		c.log.Debugf("Reading shaped layers from %s: %v; shaping every layer", st, err)
		return
	}
	c.stored[st] = len(stored.Entries) + len(stored.Indexes)
	for _, e := range stored.Entries {
		if _, have := c.recalled[e.Key]; !have {
			c.recalled[e.Key] = recalledEntry{entry: e, store: st}
		}
	}
	for d, index := range stored.Indexes {
		if _, have := c.indexes[d]; !have {
			c.indexes[d] = recalledIndex{desc: index, store: st}
		}
	}
}

// wait blocks until the entries are loaded; false when ctx ended first.
func (c *ShapeCache) wait(ctx context.Context) bool {
	select {
	case <-c.loaded:
		return true
	default:
	}
	select {
	case <-c.loaded:
		return true
	case <-ctx.Done():
		return false
	}
}

// LeaveOutOfExport puts a placeholder into the OCI layout dir BuildKit is
// about to export into for every cached layer shaping can do without (see
// ShapeCache). Safe on a nil cache.
func (c *ShapeCache) LeaveOutOfExport(ctx context.Context, dir string) {
	if c == nil || c.cacheBlobs == nil || !c.wait(ctx) {
		return
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	for d := range c.indexes {
		if !c.cacheBlobs[d] || d.Algorithm != "sha256" {
			continue
		}
		if err := os.MkdirAll(blobs, 0o755); err != nil {
			c.log.Debugf("Leaving cached layers out of the export: %v", err)
			return
		}
		if err := os.WriteFile(filepath.Join(blobs, d.Hex), nil, 0o644); err != nil {
			c.log.Debugf("Leaving cached layers out of the export: %v", err)
			return
		}
		c.leftOut[d] = true
	}
	if len(c.leftOut) > 0 {
		c.log.Debugf("Leaving %d cached layers out of the export; %s serves them", len(c.leftOut), c.blobStore)
	}
}

// Input prepares shaping: it sets opts to use the cache and returns img
// with the layers left out of the export served by the cache. A nil cache
// returns img as it is.
func (c *ShapeCache) Input(ctx context.Context, img v1.Image, opts *shape.Options) (v1.Image, error) {
	if c == nil || !c.wait(ctx) {
		return img, nil
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	if len(cf.RootFS.DiffIDs) != len(layers) {
		return nil, fmt.Errorf("BuildKit's export lists %d layers and %d diff IDs", len(layers), len(cf.RootFS.DiffIDs))
	}
	served := slices.Clone(layers)
	for i, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		c.exported = append(c.exported, d)
		if !c.leftOut[d] {
			continue
		}
		// Digest, size and media type from the manifest, the diff ID from
		// the config: a layout layer would hash the placeholder for it.
		desc := shape.MemoLayer{Digest: d, DiffID: cf.RootFS.DiffIDs[i]}
		if desc.Size, err = l.Size(); err != nil {
			return nil, err
		}
		if desc.MediaType, err = l.MediaType(); err != nil {
			return nil, err
		}
		served[i] = c.blobStore.layer(desc)
	}
	opts.Memo, opts.MemoVersion = c, c.version
	if len(c.leftOut) == 0 {
		return img, nil
	}
	return &servedImage{Image: img, layers: served}, nil
}

// servedImage is an image whose layers are read from elsewhere.
type servedImage struct {
	v1.Image
	layers []v1.Layer
}

func (s *servedImage) Layers() ([]v1.Layer, error) { return s.layers, nil }

// Recall implements shape.Memo.
func (c *ShapeCache) Recall(key string) (*shape.MemoEntry, v1.Layer, bool) {
	r, ok := c.recalled[key]
	if !ok {
		return nil, nil, false
	}
	if r.entry.Layer == nil {
		return r.entry, nil, true
	}
	return r.entry, r.store.layer(*r.entry.Layer), true
}

// Remember implements shape.Memo.
func (c *ShapeCache) Remember(e *shape.MemoEntry, l v1.Layer) {
	if c.seen[e.Key] {
		return
	}
	c.seen[e.Key] = true
	u := usedEntry{entry: e, layer: l}
	if r, ok := c.recalled[e.Key]; ok && r.entry == e {
		u.from = r.store
		c.reused++
		if e.Layer != nil {
			c.log.Infof("Reusing the shaped layer %s of %q from %s", e.Layer.Digest, e.CreatedBy, r.store)
		}
	}
	c.used = append(c.used, u)
}

// Index implements shape.Memo.
func (c *ShapeCache) Index(layer v1.Hash) (v1.Layer, bool) {
	if l, ok := c.newIndexes[layer]; ok {
		return l, true
	}
	if r, ok := c.indexes[layer]; ok {
		return r.store.layer(r.desc), true
	}
	return nil, false
}

// RememberIndex implements shape.Memo.
func (c *ShapeCache) RememberIndex(layer v1.Hash, index v1.Layer) {
	c.newIndexes[layer] = index
}

// Save writes this build's entries to every writable store; a failure only
// warns, as a failed cache push does. pushed are the destinations the image
// went to, which new blobs can be mounted from.
func (c *ShapeCache) Save(ctx context.Context, pushed []name.Repository) {
	if c == nil || len(c.used) == 0 {
		return
	}
	c.log.Debugf("Shaping reused %d of %d layers", c.reused, len(c.used))
	for _, st := range c.stores {
		if !st.writable() {
			continue
		}
		img, unchanged, err := c.manifest(st)
		if err == nil && !unchanged {
			err = st.save(ctx, img, c.shapedBlobs(), pushed)
		}
		switch {
		case err != nil:
			c.log.Warnf("Error saving shaped layers to %s: %v", st, helper.OneLine(err.Error()))
		case !unchanged:
			c.log.Debugf("Saved the shaped layers to %s", st)
		}
	}
}

// shapedBlobs are the digests of the shaped layers this build used: all
// are in the image it published.
func (c *ShapeCache) shapedBlobs() map[v1.Hash]bool {
	blobs := map[v1.Hash]bool{}
	for _, u := range c.used {
		if u.entry.Layer != nil {
			blobs[u.entry.Layer.Digest] = true
		}
	}
	return blobs
}

// manifest is the shaped-layer manifest of this build's entries and the
// indexes of its BuildKit layers, for st: blobs st holds are its own.
// unchanged says st holds exactly these already.
func (c *ShapeCache) manifest(st shapeStore) (img v1.Image, unchanged bool, err error) {
	cfg := shapedConfig{Indexes: map[v1.Hash]shape.MemoLayer{}}
	layers := map[v1.Hash]v1.Layer{}
	var descs []v1.Descriptor
	unchanged = true
	add := func(d shape.MemoLayer, l v1.Layer, from shapeStore) {
		if from != st {
			unchanged = false
		}
		if layers[d.Digest] != nil {
			return
		}
		if from != nil {
			l = from.layer(d)
		}
		layers[d.Digest] = l
		descs = append(descs, v1.Descriptor{MediaType: d.MediaType, Size: d.Size, Digest: d.Digest})
	}
	for _, u := range c.used {
		cfg.Entries = append(cfg.Entries, u.entry)
		if u.from != st {
			unchanged = false
		}
		if u.entry.Layer != nil {
			add(*u.entry.Layer, u.layer, u.from)
		}
	}
	for _, d := range c.exported {
		if l, ok := c.newIndexes[d]; ok {
			desc, err := shape.MemoLayerOf(l)
			if err != nil {
				return nil, false, err
			}
			cfg.Indexes[d] = desc
			add(desc, l, nil)
		} else if r, ok := c.indexes[d]; ok {
			cfg.Indexes[d] = r.desc
			add(r.desc, nil, r.store)
		}
	}
	unchanged = unchanged && c.stored[st] == len(cfg.Entries)+len(cfg.Indexes)
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, false, err
	}
	configDigest, configSize, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return nil, false, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: shapedConfigType, Size: configSize, Digest: configDigest},
		Layers:        descs,
	}
	if descs == nil {
		m.Layers = []v1.Descriptor{}
	}
	rawManifest, err := json.Marshal(m)
	if err != nil {
		return nil, false, err
	}
	img, err = partial.CompressedToImage(&shapedManifest{config: raw, manifest: rawManifest, layers: layers})
	return img, unchanged, err
}

// shapedManifest is the shaped-layer manifest as a go-containerregistry
// image, so remote.Write and layout write it with its blobs.
type shapedManifest struct {
	config, manifest []byte
	layers           map[v1.Hash]v1.Layer
}

func (m *shapedManifest) RawConfigFile() ([]byte, error)      { return m.config, nil }
func (m *shapedManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (m *shapedManifest) RawManifest() ([]byte, error)        { return m.manifest, nil }
func (m *shapedManifest) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := m.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("shaped-layer manifest has no blob %s", h)
}

// parseShapedManifest reads the config of a shaped-layer manifest.
func parseShapedManifest(img v1.Image) (*shapedConfig, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	if m.Config.MediaType != shapedConfigType {
		return nil, fmt.Errorf("config media type %q is not kiln's %q", m.Config.MediaType, shapedConfigType)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, err
	}
	var cfg shapedConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("shaped-layer entries: %w", err)
	}
	return &cfg, nil
}

// storedLayer is a blob whose descriptor is known without reading it.
type storedLayer struct {
	desc shape.MemoLayer
	open func() (io.ReadCloser, error)
}

func (l *storedLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *storedLayer) DiffID() (v1.Hash, error)            { return l.desc.DiffID, nil }
func (l *storedLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *storedLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *storedLayer) Compressed() (io.ReadCloser, error)  { return l.open() }

func newStoredLayer(d shape.MemoLayer, open func() (io.ReadCloser, error)) v1.Layer {
	l, _ := partial.CompressedToLayer(&storedLayer{desc: d, open: open})
	return l
}

// registryShapes keeps the entries in the cache repository.
type registryShapes struct {
	ref      name.Tag
	options  []remote.Option
	readOnly bool
}

func (r *registryShapes) String() string { return r.ref.String() }
func (r *registryShapes) writable() bool { return !r.readOnly }

func (r *registryShapes) load(ctx context.Context) (*shapedConfig, error) {
	desc, err := remote.Get(r.ref, r.options...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return nil, errNoCache
	}
	if err != nil {
		return nil, err
	}
	img, err := desc.Image()
	if err != nil {
		return nil, err
	}
	return parseShapedManifest(img)
}

// layer is read from the cache repository only when an output needs its
// bytes; a push to the same registry mounts it instead.
func (r *registryShapes) layer(d shape.MemoLayer) v1.Layer {
	ref := r.ref.Context().Digest(d.Digest.String())
	open := func() (io.ReadCloser, error) {
		l, err := remote.Layer(ref, r.options...)
		if err != nil {
			return nil, err
		}
		return l.Compressed()
	}
	return &remote.MountableLayer{Layer: newStoredLayer(d, open), Reference: ref}
}

func (r *registryShapes) save(_ context.Context, img v1.Image, pushed map[v1.Hash]bool, pushedTo []name.Repository) error {
	for _, from := range pushedTo {
		if from.RegistryStr() == r.ref.RegistryStr() && from.String() != r.ref.Context().String() {
			img = &mountingImage{Image: img, from: from, pushed: pushed}
			break
		}
	}
	return remote.Write(r.ref, img, r.options...)
}

// mountingImage lets the registry mount the blobs just pushed to another
// repository instead of receiving them again.
type mountingImage struct {
	v1.Image
	from   name.Repository
	pushed map[v1.Hash]bool
}

func (m *mountingImage) Layers() ([]v1.Layer, error) {
	layers, err := m.Image.Layers()
	if err != nil {
		return nil, err
	}
	for i, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		if _, mountable := l.(*remote.MountableLayer); !mountable && m.pushed[d] {
			layers[i] = &remote.MountableLayer{Layer: l, Reference: m.from.Digest(d.String())}
		}
	}
	return layers, nil
}

// layoutShapes keeps the entries in an OCI layout: an oci: cache
// repository, or the --cache-dir state.
type layoutShapes struct {
	dir, tag string
	readOnly bool
}

func (l *layoutShapes) String() string { return "oci:" + l.dir + ":" + l.tag }
func (l *layoutShapes) writable() bool { return !l.readOnly }

func (l *layoutShapes) load(context.Context) (*shapedConfig, error) {
	if _, err := os.Stat(filepath.Join(l.dir, "index.json")); errors.Is(err, os.ErrNotExist) {
		return nil, errNoCache
	}
	idx, err := layout.ImageIndexFromPath(l.dir)
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, desc := range m.Manifests {
		if desc.Annotations[refNameAnnotation] != l.tag {
			continue
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return nil, err
		}
		return parseShapedManifest(img)
	}
	return nil, errNoCache
}

func (l *layoutShapes) layer(d shape.MemoLayer) v1.Layer {
	return newStoredLayer(d, func() (io.ReadCloser, error) { return layout.Path(l.dir).Blob(d.Digest) })
}

func (l *layoutShapes) save(_ context.Context, img v1.Image, _ map[v1.Hash]bool, _ []name.Repository) error {
	p, err := layout.FromPath(l.dir)
	if err != nil {
		if p, err = layout.Write(l.dir, empty.Index); err != nil {
			return err
		}
	}
	annotations := map[string]string{refNameAnnotation: l.tag}
	return p.ReplaceImage(img, match.Annotation(refNameAnnotation, l.tag), layout.WithAnnotations(annotations))
}

const refNameAnnotation = "org.opencontainers.image.ref.name"

// shapeMemoVersion is kiln's version as the shaped-layer keys see it: a
// build from a modified checkout adds its executable's hash, so a changed
// shaping never meets entries made by other code under the same version.
func shapeMemoVersion(version string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.modified" && s.Value == "true" {
			if sum, err := executableHash(); err == nil {
				return version + "+" + sum
			}
		}
	}
	return version
}

func executableHash() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	f, err := os.Open(exe)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// pushedRepositories are the repositories the build pushed its image to.
func pushedRepositories(registry *compat.RegistrySettings, opts *flagmap.Options) []name.Repository {
	if opts.NoPush {
		return nil
	}
	var repos []name.Repository
	for _, dest := range opts.Destinations {
		if tag, err := registry.ParseTag(dest, false); err == nil {
			repos = append(repos, tag.Context())
		}
	}
	return repos
}
