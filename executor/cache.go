package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/flagmap"
	cacheimporttypes "github.com/moby/buildkit/cache/remotecache/v1/types"
	"github.com/moby/buildkit/client"
	"github.com/sirupsen/logrus"
)

// LayerCache is Kaniko's --cache layer cache expressed as BuildKit cache
// imports and exports.
//
// Kaniko tags one single-layer image per cached command (<repo>:<key>).
// BuildKit keeps a whole build's cache in one manifest, so kiln writes one
// tag per build identity: "kiln-" followed by 16 hex digits of the SHA-256 of
// the first destination's repository, --target and --custom-platform. Builds
// of the same image share their cache; different images sharing one cache
// repository do not overwrite each other's. A --cache-repo that already
// carries a tag uses that tag as given. Next to it, "<tag>-shaped" keeps the
// Kaniko form of the cached layers (ShapeCache).
type LayerCache struct {
	Imports []client.CacheOptionsEntry
	Exports []client.CacheOptionsEntry
	// Push is the cache repository's registry host, for the daemon's
	// registry settings; empty for an oci: cache or no cache.
	Push string
	// Ref names the cache for logs: "<repository>:<tag>" or "oci:<dir>:<tag>".
	Ref string

	// tag is the cache tag; shapes keep the shaped layers next to it.
	tag    string
	shapes []shapeStore
	// blobs are the blobs of the imported cache, which blobStore serves.
	blobs     map[v1.Hash]bool
	blobStore shapeStore
}

// cacheTagPrefix starts every tag kiln writes into a cache repository.
const cacheTagPrefix = "kiln-"

// LayerCacheConfig is what PlanLayerCache needs from the invocation.
type LayerCacheConfig struct {
	Options  *flagmap.Options
	Registry *compat.RegistrySettings
	Keychain authn.Keychain
	Logger   logrus.FieldLogger
	// Now is the clock --cache-ttl is measured with; nil means time.Now.
	Now func() time.Time
}

// PlanLayerCache maps --cache, --cache-repo, --no-push-cache and --cache-ttl
// onto BuildKit cache entries. Without --cache it returns an empty cache.
//
//   - The registry cache is exported with mode=max (every intermediate
//     step, as Kaniko caches every RUN), as an OCI image manifest, and with
//     ignore-error=true: like Kaniko, a failed cache push only warns.
//   - --no-push-cache imports without exporting.
//   - --cache-ttl: BuildKit cannot drop single entries of an imported cache,
//     so kiln applies the TTL to the cache as a whole. Each entry records
//     when its layer was first built, and reuse keeps that time; when the
//     oldest entry is older than the TTL, kiln does not import the cache, so
//     the build reruns every step and exports a fresh cache. No layer older
//     than the TTL is ever reused, as in Kaniko, at the price of one full
//     rebuild per TTL period.
func PlanLayerCache(ctx context.Context, cfg LayerCacheConfig) (*LayerCache, error) {
	opts := cfg.Options
	if !opts.Cache {
		return &LayerCache{}, nil
	}
	if cfg.Logger == nil {
		cfg.Logger = logrus.StandardLogger()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tag := cacheTag(cfg.Registry, opts)
	if dir, ok := strings.CutPrefix(opts.CacheRepo, "oci:"); ok {
		return planLocalCache(cfg, dir, tag)
	}
	repo, explicitTag, err := cacheRepository(cfg.Registry, opts, cfg.Logger)
	if err != nil {
		return nil, err
	}
	if repo == nil {
		return &LayerCache{tag: tag}, nil
	}
	if explicitTag != "" {
		tag = explicitTag
	}
	ref := buildkitRepository(*repo) + ":" + tag
	cache := &LayerCache{Push: repo.RegistryStr(), Ref: ref, tag: tag, shapes: []shapeStore{&registryShapes{
		ref:      repo.Tag(tag + shapedTagSuffix),
		options:  cfg.Registry.RemoteOptions(ctx, repo.RegistryStr(), cfg.Keychain),
		readOnly: opts.NoPushCache,
	}}}
	attrs := map[string]string{"ref": ref}
	if daemonPlainHTTP(cfg.Registry, repo.RegistryStr()) {
		attrs["registry.insecure"] = "true"
	}

	fresh, blobs, err := registryCacheFresh(ctx, cfg, repo.Tag(tag))
	switch {
	case errors.Is(err, errNoCache):
		cfg.Logger.Infof("No cache found at %s; the build will populate it", ref)
	case err != nil:
		// Let BuildKit try: it reports its own import problems, and a
		// failed import never fails the build.
		cfg.Logger.Debugf("checking the age of cache %s: %v", ref, err)
		cache.Imports = append(cache.Imports, client.CacheOptionsEntry{Type: "registry", Attrs: attrs})
	case !fresh:
		cfg.Logger.Infof("Cache %s holds layers older than --cache-ttl=%s; rebuilding without it", ref, opts.CacheTTL)
	default:
		cfg.Logger.Infof("Using cache %s", ref)
		cache.Imports = append(cache.Imports, client.CacheOptionsEntry{Type: "registry", Attrs: attrs})
		cache.blobs, cache.blobStore = blobs, cache.shapes[0]
	}
	if !opts.NoPushCache {
		export := cacheExportAttrs(opts)
		for k, v := range attrs {
			export[k] = v
		}
		export["image-manifest"] = "true"
		export["oci-mediatypes"] = "true"
		cache.Exports = append(cache.Exports, client.CacheOptionsEntry{Type: "registry", Attrs: export})
	}
	return cache, nil
}

// OpenShapes starts reading the shaped layers kept next to the cache and,
// when the build holds one, in the --cache-dir state (see ShapeCache); nil
// without --cache.
func (c *LayerCache) OpenShapes(ctx context.Context, state *CacheDirState, version string, log logrus.FieldLogger) *ShapeCache {
	stores := c.shapes
	if root := state.RootDir(); root != "" && c.tag != "" {
		// Under the state's lock, and first: its blobs are on local disk.
		stores = append([]shapeStore{&layoutShapes{dir: root + shapedTagSuffix, tag: c.tag}}, stores...)
	}
	return openShapeCache(ctx, shapeCacheConfig{stores: stores, version: shapeMemoVersion(version), log: log,
		cacheBlobs: c.blobs, blobStore: c.blobStore})
}

// planLocalCache is --cache-repo=oci:<dir>: an OCI layout on disk that is
// read and written by the client, never pushed.
func planLocalCache(cfg LayerCacheConfig, dir, tag string) (*LayerCache, error) {
	if dir == "" {
		return nil, errors.New("--cache-repo=oci: names no directory: give oci:/path/to/cache")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("--cache-repo=oci:%s: %w", dir, err)
	}
	cache := &LayerCache{Ref: "oci:" + abs + ":" + tag, tag: tag,
		shapes: []shapeStore{&layoutShapes{dir: abs, tag: tag + shapedTagSuffix, readOnly: cfg.Options.NoPushCache}}}
	fresh, blobs, err := localCacheFresh(cfg, abs, tag)
	switch {
	case errors.Is(err, errNoCache):
		cfg.Logger.Infof("No cache found at %s; the build will populate it", cache.Ref)
	case err != nil:
		cfg.Logger.Debugf("checking the age of cache %s: %v", cache.Ref, err)
		cache.Imports = append(cache.Imports, localImport(abs, tag))
	case !fresh:
		cfg.Logger.Infof("Cache %s holds layers older than --cache-ttl=%s; rebuilding without it", cache.Ref, cfg.Options.CacheTTL)
	default:
		cfg.Logger.Infof("Using cache %s", cache.Ref)
		cache.Imports = append(cache.Imports, localImport(abs, tag))
		cache.blobs, cache.blobStore = blobs, cache.shapes[0]
	}
	if !cfg.Options.NoPushCache {
		export := cacheExportAttrs(cfg.Options)
		export["dest"], export["tag"] = abs, tag
		export["image-manifest"] = "true"
		export["oci-mediatypes"] = "true"
		cache.Exports = append(cache.Exports, client.CacheOptionsEntry{Type: "local", Attrs: export})
	}
	return cache, nil
}

func localImport(dir, tag string) client.CacheOptionsEntry {
	return client.CacheOptionsEntry{Type: "local", Attrs: map[string]string{"src": dir, "tag": tag}}
}

// cacheExportAttrs are shared by both exporters: every step, failures only
// warn, and the image's compression so layer blobs are shared, not redone.
func cacheExportAttrs(opts *flagmap.Options) map[string]string {
	attrs := map[string]string{"mode": "max", "ignore-error": "true"}
	for k, v := range compressionAttrs(opts.Compression, opts.CompressionLevel) {
		attrs[k] = v
	}
	return attrs
}

// cacheRepository is --cache-repo, or Kaniko's <first destination>/cache.
// It returns no repository (and warns) when neither exists.
func cacheRepository(registry *compat.RegistrySettings, opts *flagmap.Options, log logrus.FieldLogger) (*name.Repository, string, error) {
	if opts.CacheRepo == "" {
		if len(opts.Destinations) == 0 {
			log.Warn("--cache: no --cache-repo and no --destination to derive <destination>/cache from; building without a layer cache")
			return nil, "", nil
		}
		dest, err := registry.ParseTag(opts.Destinations[0], false)
		if err != nil {
			return nil, "", fmt.Errorf("--destination %s: %w", opts.Destinations[0], err)
		}
		repo, err := name.NewRepository(dest.Context().Name()+"/cache", registry.NameOptions(dest.RegistryStr(), false)...)
		return &repo, "", err
	}
	if repo, err := name.NewRepository(opts.CacheRepo, name.WeakValidation); err == nil {
		repo, err = name.NewRepository(opts.CacheRepo, registry.NameOptions(repo.RegistryStr(), false)...)
		return &repo, "", err
	}
	tag, err := registry.ParseTag(opts.CacheRepo, false)
	if err != nil {
		return nil, "", fmt.Errorf("--cache-repo %s: not a repository (give registry/path, or oci:/path for a local cache): %v", opts.CacheRepo, err)
	}
	repo := tag.Context()
	return &repo, tag.TagStr(), nil
}

// buildkitRepository names repo the way BuildKit's resolver and
// buildkitd.toml name Docker Hub.
func buildkitRepository(repo name.Repository) string {
	if repo.RegistryStr() == compat.DockerHub {
		return "docker.io/" + repo.RepositoryStr()
	}
	return repo.Name()
}

// daemonPlainHTTP says whether the daemon reaches host, a push target,
// over plain HTTP under kiln's registry settings.
func daemonPlainHTTP(registry *compat.RegistrySettings, host string) bool {
	key := host
	if host == compat.DockerHub {
		key = "docker.io"
	}
	c, ok := registry.DaemonRegistries(compat.DaemonHosts{Push: []string{host}})[key]
	return ok && c.PlainHTTP != nil && *c.PlainHTTP
}

// cacheTag is the build identity tag documented on LayerCache.
func cacheTag(registry *compat.RegistrySettings, opts *flagmap.Options) string {
	identity := ""
	if len(opts.Destinations) > 0 {
		identity = opts.Destinations[0]
		if dest, err := registry.ParseTag(identity, false); err == nil {
			identity = dest.Context().Name()
		}
	}
	sum := sha256.Sum256([]byte(identity + "\x00" + opts.Target + "\x00" + opts.CustomPlatform))
	return cacheTagPrefix + hex.EncodeToString(sum[:8])
}

// errNoCache means the cache does not exist yet.
var errNoCache = errors.New("no cache")

// registryCacheFresh says whether the cache at ref is within --cache-ttl
// and lists the blobs it holds.
func registryCacheFresh(ctx context.Context, cfg LayerCacheConfig, ref name.Tag) (bool, map[v1.Hash]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	desc, err := remote.Get(ref, cfg.Registry.RemoteOptions(ctx, ref.RegistryStr(), cfg.Keychain)...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return false, nil, errNoCache
	}
	if err != nil {
		return false, nil, err
	}
	img, err := cacheImageOf(desc)
	if err != nil {
		return false, nil, err
	}
	return cacheImageFresh(cfg, img)
}

// errIndexCache is a cache in BuildKit's older index form, whose config
// kiln does not read; such a cache is imported without an age check.
var errIndexCache = errors.New("cache in the index form (image-manifest=false); its age is not checked")

// cacheConfigOf reads BuildKit's cache config from a cache manifest
// (image-manifest=true, which kiln writes).
func cacheConfigOf(desc *remote.Descriptor) (*cacheimporttypes.CacheConfig, error) {
	img, err := cacheImageOf(desc)
	if err != nil {
		return nil, err
	}
	return cacheConfigInImage(img)
}

func cacheImageOf(desc *remote.Descriptor) (v1.Image, error) {
	if desc.MediaType.IsIndex() {
		return nil, errIndexCache
	}
	return desc.Image()
}

// cacheImageFresh checks a cache manifest's age and lists its blobs.
func cacheImageFresh(cfg LayerCacheConfig, img v1.Image) (bool, map[v1.Hash]bool, error) {
	config, err := cacheConfigInImage(img)
	if err != nil {
		return false, nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return false, nil, err
	}
	blobs := map[v1.Hash]bool{}
	for _, l := range m.Layers {
		blobs[l.Digest] = true
	}
	return cacheFresh(config, cfg.Options.CacheTTL, cfg.Now()), blobs, nil
}

func cacheConfigInImage(img v1.Image) (*cacheimporttypes.CacheConfig, error) {
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, err
	}
	return parseCacheConfig(raw)
}

func parseCacheConfig(raw []byte) (*cacheimporttypes.CacheConfig, error) {
	var config cacheimporttypes.CacheConfig
	if err := json.Unmarshal(raw, &config); err != nil {
		return nil, fmt.Errorf("BuildKit cache config: %w", err)
	}
	return &config, nil
}

// localCacheFresh finds tag in an OCI layout written by BuildKit's local
// cache exporter.
func localCacheFresh(cfg LayerCacheConfig, dir, tag string) (bool, map[v1.Hash]bool, error) {
	if _, err := os.Stat(filepath.Join(dir, "index.json")); errors.Is(err, os.ErrNotExist) {
		return false, nil, errNoCache
	}
	path, err := layout.FromPath(dir)
	if err != nil {
		return false, nil, err
	}
	idx, err := path.ImageIndex()
	if err != nil {
		return false, nil, err
	}
	manifest, err := idx.IndexManifest()
	if err != nil {
		return false, nil, err
	}
	for _, m := range manifest.Manifests {
		if m.Annotations[refNameAnnotation] != tag {
			continue
		}
		if m.MediaType.IsIndex() {
			return false, nil, errIndexCache
		}
		img, err := idx.Image(m.Digest)
		if err != nil {
			return false, nil, err
		}
		return cacheImageFresh(cfg, img)
	}
	return false, nil, errNoCache
}

// cacheFresh says whether no entry of config is older than ttl. Entries
// without a time do not count; ttl <= 0 disables the check.
func cacheFresh(config *cacheimporttypes.CacheConfig, ttl time.Duration, now time.Time) bool {
	if ttl <= 0 {
		return true
	}
	oldest, ok := oldestEntry(config)
	return !ok || now.Sub(oldest) <= ttl
}

func oldestEntry(config *cacheimporttypes.CacheConfig) (time.Time, bool) {
	var oldest time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	for _, l := range config.Layers {
		if l.Annotations != nil {
			consider(l.Annotations.CreatedAt)
		}
	}
	for _, r := range config.Records {
		for _, res := range r.Results {
			consider(res.CreatedAt)
		}
		for _, res := range r.ChainedResults {
			consider(res.CreatedAt)
		}
	}
	return oldest, !oldest.IsZero()
}

// CacheDirState is a persistent BuildKit root under --cache-dir, locked for
// one build at a time. BuildKit's own store is not safe for two daemons, so
// a build that finds it locked uses a private root instead.
type CacheDirState struct {
	Root string
	lock *os.File
}

// cacheDirSubdir keeps kiln's state apart from Kaniko's warmed tarballs.
const cacheDirSubdir = "kiln"

// cacheDirRoot is the root for this daemon mode: a rootless daemon writes
// files owned by the user's subordinate IDs, which a rootful daemon (or
// another user's) must not share.
func cacheDirRoot(cacheDir string, rootless bool) string {
	mode := "buildkit-root"
	if rootless {
		mode = "buildkit-rootless-" + strconv.Itoa(os.Getuid())
	}
	return filepath.Join(cacheDir, cacheDirSubdir, mode)
}

// ErrCacheDirBusy means another build holds the --cache-dir state.
var ErrCacheDirBusy = errors.New("the --cache-dir state is in use by another build")

// LockCacheDirState locks and creates the BuildKit root under cacheDir for a
// daemon in the given mode. With wait it blocks until ctx ends; otherwise a
// held lock returns ErrCacheDirBusy at once.
func LockCacheDirState(ctx context.Context, cacheDir string, rootless, wait bool) (*CacheDirState, error) {
	root := cacheDirRoot(cacheDir, rootless)
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		return nil, fmt.Errorf("--cache-dir %s: %w", cacheDir, err)
	}
	f, err := os.OpenFile(root+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--cache-dir %s: %w", cacheDir, err)
	}
	for delay := 50 * time.Millisecond; ; delay = min(delay*2, time.Second) {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("--cache-dir %s: locking %s: %w", cacheDir, f.Name(), err)
		}
		if !wait {
			f.Close()
			return nil, ErrCacheDirBusy
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the --cache-dir lock %s: %w", f.Name(), ctx.Err())
		case <-time.After(delay):
		}
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cache-dir %s: %w", cacheDir, err)
	}
	return &CacheDirState{Root: root, lock: f}, nil
}

// Release unlocks the state; the daemon using it must have stopped. It is
// safe on a nil state.
func (s *CacheDirState) Release() {
	if s != nil && s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

// RootDir is the daemon root, or "" for a nil state (a private root).
func (s *CacheDirState) RootDir() string {
	if s == nil {
		return ""
	}
	return s.Root
}

// cacheDirStateFor is the executor's use of --cache-dir: only with --cache
// (Kaniko reads it only then), only for a private daemon, only when the
// directory already exists and is writable (a mounted volume), and never
// waiting for a concurrent build.
func cacheDirStateFor(ctx context.Context, opts *flagmap.Options, log logrus.FieldLogger) *CacheDirState {
	if !opts.Cache || opts.BuildkitHost != "" || opts.CacheDir == "" {
		return nil
	}
	if info, err := os.Stat(opts.CacheDir); err != nil || !info.IsDir() || !writableDir(opts.CacheDir) {
		log.Debugf("--cache-dir %s is not a writable directory; BuildKit state stays private to this build", opts.CacheDir)
		return nil
	}
	state, err := LockCacheDirState(ctx, opts.CacheDir, os.Geteuid() != 0, false)
	if errors.Is(err, ErrCacheDirBusy) {
		log.Warnf("--cache-dir %s is in use by another build; this build uses a private BuildKit state and will not reuse or fill it", opts.CacheDir)
		return nil
	}
	if err != nil {
		log.Warnf("%v; this build uses a private BuildKit state", err)
		return nil
	}
	return state
}
