// Package embedded runs BuildKit inside kiln's own process with a worker
// that never calls mount(2) and needs no namespace, so kiln builds where
// Kaniko builds: as root with only a container's default privileges (default
// seccomp, AppArmor and capabilities). Snapshots are plain directories
// sharing unchanged files by hardlink (linkSnapshotter), layers are applied
// and diffed by path, and RUN runs as Kaniko runs it, in the container's own
// root filesystem (rootRunner). The controller serves BuildKit's API in memory, so the
// solve, progress and session attachables work as with a daemon.
package embedded

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/moby/buildkit/cache/remotecache"
	localremotecache "github.com/moby/buildkit/cache/remotecache/local"
	registryremotecache "github.com/moby/buildkit/cache/remotecache/registry"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/cmd/buildkitd/config"
	"github.com/moby/buildkit/control"
	"github.com/moby/buildkit/frontend"
	dockerfile "github.com/moby/buildkit/frontend/dockerfile/builder"
	"github.com/moby/buildkit/frontend/gateway/forwarder"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/solver"
	"github.com/moby/buildkit/solver/bboltcachestorage"
	"github.com/moby/buildkit/util/db/boltutil"
	"github.com/moby/buildkit/util/grpcerrors"
	"github.com/moby/buildkit/util/resolver"
	"github.com/moby/buildkit/worker"
	"github.com/moby/buildkit/worker/base"
	digest "github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"
)

// Config configures the engine.
type Config struct {
	// StateDir holds everything the engine writes; it must be on a path
	// the skip list keeps (under the kaniko dir). Created if missing.
	StateDir string
	// Root, when set, is a persistent BuildKit root (the --cache-dir
	// state); empty keeps it in StateDir.
	Root string
	// ThrowAwayState marks state deleted after this build (or by the next
	// one after a crash): its databases skip fsync (kiln's BuildKit patch).
	ThrowAwayState bool
	// RegistryConfigTOML is buildkitd.toml text of [registry."host"] tables.
	RegistryConfigTOML string
	// KanikoDir is Kaniko's own directory, never part of the image.
	KanikoDir string
	// Keep lists further paths of the container RUN must not disturb:
	// the build context, kiln's work directory, the cache directory.
	Keep []string
	// HostRoot is the root filesystem RUN runs in: "/" (the default) in a
	// container; tests give a directory, and RUN then chroots into it.
	HostRoot string
	// Mountinfo is read for the container's mount points; empty means
	// /proc/self/mountinfo.
	Mountinfo string
	// Secrets are credential files (config.json) taken off the filesystem
	// while RUN steps run, and put back after; Exposed is told of those on
	// read-only mounts, which stay readable (as in Kaniko).
	Secrets []string
	Exposed func(paths []string)
}

// Engine is BuildKit embedded in this process.
type Engine struct {
	client   *client.Client
	server   *grpc.Server
	listener *bufconn.Listener
	worker   *base.Worker
	runner   *rootRunner
	headers  *layerHeaders
	closers  []func() error

	closeOnce sync.Once
	closeErr  error
}

// Start builds the worker and controller and connects a client to them.
func Start(ctx context.Context, cfg Config) (_ *Engine, err error) {
	if cfg.HostRoot == "" {
		cfg.HostRoot = "/"
	}
	if cfg.Mountinfo == "" {
		cfg.Mountinfo = "/proc/self/mountinfo"
	}
	e := &Engine{}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the BuildKit state dir: %w", err)
	}
	tmp := filepath.Join(cfg.StateDir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	// From here on the root may hold a build's filesystem: this process
	// keeps its temporary files and trusted CAs off it.
	oldTmp, hadTmp := os.LookupEnv("TMPDIR")
	os.Setenv("TMPDIR", tmp)
	e.closers = append(e.closers, func() error {
		if hadTmp {
			return os.Setenv("TMPDIR", oldTmp)
		}
		return os.Unsetenv("TMPDIR")
	})
	if _, err := x509.SystemCertPool(); err != nil {
		return nil, fmt.Errorf("loading trusted CAs: %w", err)
	}
	if err := checkPathOnlyBinds(tmp); err != nil {
		return nil, err
	}
	// RUN runs as root beside this process: without dumpability its memory,
	// environment and open files (the credentials) are closed to RUN, which
	// lacks CAP_SYS_PTRACE.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("closing this process to RUN steps: %w", err)
	}

	mountinfo, err := os.ReadFile(cfg.Mountinfo)
	if err != nil {
		return nil, fmt.Errorf("reading the container's mounts: %w", err)
	}
	// The root's own tree is kept beside it, on its filesystem.
	stash := filepath.Join(cfg.HostRoot, fmt.Sprintf(".kiln-root-own-%d", os.Getpid()))
	keep := append([]string{cfg.StateDir, cfg.Root, "/" + filepath.Base(stash)}, cfg.Keep...)
	skip, err := kanikoSkipList(cfg.KanikoDir, bytes.NewReader(mountinfo), keep...)
	if err != nil {
		return nil, err
	}
	// The kaniko dir itself is guarded, but for kiln's own paths in it.
	guardSkip, err := kanikoSkipList("", bytes.NewReader(mountinfo), keep...)
	if err != nil {
		return nil, err
	}
	e.runner = &rootRunner{root: cfg.HostRoot, skip: skip, stash: stash, secrets: cfg.Secrets, exposed: cfg.Exposed,
		kanikoDir: filepath.Join(cfg.HostRoot, cfg.KanikoDir), kanikoKeep: guardSkip}

	root := cfg.Root
	if root == "" {
		root = filepath.Join(cfg.StateDir, "root")
	}
	daemonCfg, err := config.Load(strings.NewReader(cfg.RegistryConfigTOML))
	if err != nil {
		return nil, fmt.Errorf("registry settings: %w", err)
	}
	hosts := resolver.NewRegistryConfig(daemonCfg.Registries)

	boltutil.SetThrowAwayState(cfg.ThrowAwayState)
	e.headers = &layerHeaders{byBlob: map[digest.Digest][]*tar.Header{}}
	wopt, err := newWorkerOpt(filepath.Join(root, "embedded"), e.runner, e.headers, cfg.ThrowAwayState)
	if err != nil {
		return nil, err
	}
	wopt.RegistryHosts = hosts
	w, err := base.NewWorker(ctx, wopt)
	if err != nil {
		return nil, fmt.Errorf("starting BuildKit's worker: %w", err)
	}
	e.worker = w
	e.closers = append(e.closers, w.Close)
	wc := &worker.Controller{}
	if err := wc.Add(w); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, wc.Close)

	sessions, err := session.NewManager()
	if err != nil {
		return nil, err
	}
	cacheStore, err := bboltcachestorage.NewStore(filepath.Join(root, "cache.db"))
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, cacheStore.Close)
	historyDB, err := boltutil.Open(filepath.Join(root, "history.db"), 0o600, &bolt.Options{
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, historyDB.Close)

	ctrl, err := control.NewController(control.Opt{
		SessionManager:   sessions,
		WorkerController: wc,
		Frontends: map[string]frontend.Frontend{
			"dockerfile.v0": forwarder.NewGatewayForwarder(wc.Infos(), dockerfile.Build),
		},
		ResolveCacheExporterFuncs: map[string]remotecache.ResolveCacheExporterFunc{
			"registry": registryremotecache.ResolveCacheExporterFunc(sessions, hosts),
			"local":    localremotecache.ResolveCacheExporterFunc(sessions),
		},
		ResolveCacheImporterFuncs: map[string]remotecache.ResolveCacheImporterFunc{
			"registry": registryremotecache.ResolveCacheImporterFunc(sessions, w.ContentStore(), hosts),
			"local":    localremotecache.ResolveCacheImporterFunc(sessions),
		},
		CacheManager:   solver.NewCacheManager(ctx, "local", cacheStore, worker.NewCacheResultStorage(wc)),
		Entitlements:   []string{"network.host"},
		HistoryDB:      historyDB,
		CacheStore:     cacheStore,
		LeaseManager:   w.LeaseManager(),
		ContentStore:   w.ContentStore(),
		HistoryConfig:  &config.HistoryConfig{MaxEntries: new(int64)}, // no history: nobody reads it
		GarbageCollect: w.GarbageCollect,
	})
	if err != nil {
		return nil, fmt.Errorf("starting BuildKit's controller: %w", err)
	}
	e.closers = append(e.closers, ctrl.Close)

	e.server = grpc.NewServer(
		grpc.UnaryInterceptor(grpcerrors.UnaryServerInterceptor),
		grpc.StreamInterceptor(grpcerrors.StreamServerInterceptor),
		grpc.MaxRecvMsgSize(16<<20),
		grpc.MaxSendMsgSize(16<<20),
	)
	ctrl.Register(e.server)
	e.listener = bufconn.Listen(1 << 20)
	go e.server.Serve(e.listener)

	e.client, err = client.New(ctx, "tcp://kiln-embedded", client.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return e.listener.DialContext(ctx)
	}))
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Client returns the in-memory client; it stays valid until Close.
func (e *Engine) Client(context.Context) (*client.Client, error) { return e.client, nil }

// LayerHeaders returns the tar headers of a layer blob (by digest) this
// engine unpacked: shaping needs them and need not inflate the layer again.
// They stay after Close.
func (e *Engine) LayerHeaders(blob string) ([]*tar.Header, bool) {
	d, err := digest.Parse(blob)
	if err != nil || e.headers == nil {
		return nil, false
	}
	return e.headers.get(d)
}

// RestoreRoot gives the container its own root filesystem back once the
// solves are done, before anything is written to paths the user named.
func (e *Engine) RestoreRoot() error {
	if e.runner == nil {
		return nil
	}
	return e.runner.restore()
}

// Close restores the root filesystem and stops the engine. Idempotent.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		var errs []error
		errs = append(errs, e.RestoreRoot())
		if e.client != nil {
			errs = append(errs, e.client.Close())
		}
		if e.server != nil {
			e.server.Stop()
		}
		for i := len(e.closers) - 1; i >= 0; i-- {
			errs = append(errs, e.closers[i]())
		}
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}
