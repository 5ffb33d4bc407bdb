package executor

import (
	"archive/tar"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/kilnbuild/kiln/cli"
	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/compat/shape"
	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/executor/helper"
	"github.com/kilnbuild/kiln/executor/local"
	"github.com/kilnbuild/kiln/executor/publish"
	"github.com/kilnbuild/kiln/flagmap"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Builder runs one Kaniko invocation end to end: context, permission check,
// daemon, solve into a private OCI layout, then Kaniko's publishers. It is
// the cli's Engine and ContextResolver.
type Builder struct {
	Version string
	Stdout  io.Writer // RUN output; nil means os.Stdout
	Stderr  io.Writer // nil means os.Stderr

	Stdin io.Reader // tar://stdin; nil means the cli's standard input

	buildContext *compat.BuildContext
	dockerfile   string
}

// ResolveContext is Kaniko's step 7: the build context, then the Dockerfile.
func (b *Builder) ResolveContext(ctx context.Context, inv *flagmap.Invocation) error {
	bc, err := compat.ResolveContext(ctx, &inv.Options, b.stdin(ctx))
	if err != nil {
		return err
	}
	dockerfile, err := compat.ResolveDockerfile(&inv.Options, bc.Dir)
	if err != nil {
		bc.Cleanup()
		return err
	}
	b.buildContext, b.dockerfile = bc, dockerfile
	return nil
}

func (b *Builder) stdin(ctx context.Context) io.Reader {
	if b.Stdin != nil {
		return b.Stdin
	}
	return cli.Stdin(ctx)
}

// Build runs the invocation. Nothing is pushed unless the whole build
// succeeded; every daemon it started is gone when it returns. No build-arg
// value reaches a log line or the error except where Kaniko shows it.
func (b *Builder) Build(ctx context.Context, inv *flagmap.Invocation) error {
	secrets := newSecretFilter(inv.Options.BuildArgs)
	defer secrets.hideIn(logrus.StandardLogger())()
	return secrets.Error(b.build(ctx, inv, secrets))
}

func (b *Builder) build(ctx context.Context, inv *flagmap.Invocation, secrets *secretFilter) error {
	opts := &inv.Options
	if b.buildContext == nil {
		if err := b.ResolveContext(ctx, inv); err != nil {
			return err
		}
	}
	defer b.buildContext.Cleanup()

	registry, err := compat.NewRegistrySettings(opts, b.Version)
	if err != nil {
		return err
	}
	dockerConfig := compat.DockerConfigDir(opts)
	cfg := publish.FromOptions(opts)
	cfg.Registry = registry
	cfg.Keychain = compat.NewKeychain(compat.CredentialOptions{
		DockerConfigDir: dockerConfig,
		Helpers:         opts.CredentialHelpers,
		Transport:       registry.Transport,
	})
	cfg.Log = logrus.StandardLogger()
	if err := absolutePaths(&cfg); err != nil {
		return err
	}
	if cfg.Signer, err = signerFor(inv); err != nil {
		return err
	}
	plan, err := publish.NewPlan(cfg)
	if err != nil {
		return err
	}
	extra, err := readOtherFlags(inv)
	if err != nil {
		return err
	}

	// What a killed build left on this machine goes while this one runs.
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		engine.SweepStaleDirs(logrus.StandardLogger(), local.RemoveStateDir, workParent(opts), cmp.Or(stateParent(opts), os.TempDir()))
	}()
	defer func() { <-swept }()

	work, workLock, err := engine.NewWorkDir(workParent(opts))
	if err != nil {
		return err
	}
	defer func() {
		if err := helper.RemoveAfterExit([]string{work}, []*os.File{workLock}, false, ""); err != nil {
			logrus.Debugf("removing the work dir: %v", err)
		}
		workLock.Close()
	}()
	dockerfile, content, err := stageDockerfile(ctx, b.dockerfile, b.buildContext.Dir, filepath.Join(work, "dockerfile"))
	if err != nil {
		return err
	}
	// Errors name the user's Dockerfile, not the private copy. Parsed
	// first: its errors name the line and the fix.
	parsed, err := compat.ParseDockerfileBytes(b.dockerfile, content, opts.BuildArgs)
	if err == nil {
		err = parsed.CheckFlags()
	}
	if err != nil {
		return fmt.Errorf("error parsing Dockerfile: %w", err)
	}
	volumeDirs, err := stageVolumeDirs(dockerfile, content, work)
	if err != nil {
		return fmt.Errorf("error parsing Dockerfile: %s: %w", b.dockerfile, err)
	}
	// Without a stage at all (and no --target) BuildKit reports the error.
	kanikoStages, err := parsed.KanikoStages(opts.Target, opts.SkipUnusedStages)
	if err != nil && opts.Target != "" {
		return err
	}
	if err := compat.CheckStages(kanikoStages); err != nil {
		return fmt.Errorf("error building image: %w", err)
	}
	if err := compat.CheckLocalArchives(kanikoStages, b.buildContext.Dir); err != nil {
		return fmt.Errorf("error building image: %w", err)
	}
	extraTargets, err := stageExtraTargets(dockerfile, parsed.ExtraStages(kanikoStages))
	if err != nil {
		return fmt.Errorf("error parsing Dockerfile: %s: %w", b.dockerfile, err)
	}
	if err := stageKanikoInstructions(dockerfile, b.buildContext.Dir, parsed.Stages, kanikoStages, opts.BuildArgs, logrus.StandardLogger()); err != nil {
		return fmt.Errorf("error parsing Dockerfile: %s: %w", b.dockerfile, err)
	}

	hosts := earlyDaemonHosts(registry, parsed.BaseImages(), opts)
	// Released after the daemon using it has stopped.
	cacheDirState := cacheDirStateFor(ctx, opts, logrus.StandardLogger())
	defer cacheDirState.Release()
	daemonCfg := engine.Config{
		Host:               opts.BuildkitHost,
		StateParent:        stateParent(opts),
		Root:               cacheDirState.RootDir(),
		RegistryConfigTOML: registry.BuildkitdTOML(hosts),
		Debug:              isDebug(opts.Verbosity),
		Mode:               opts.BuildkitMode,
		Force:              opts.Force,
		KanikoDir:          compat.KanikoDir(opts),
		// What kiln itself reads while RUN steps borrow the root filesystem.
		Keep:      []string{b.buildContext.Dir, work, dockerConfig},
		Secrets:   []string{filepath.Join(dockerConfig, "config.json")},
		CrashDirs: []string{work},
		// Removing an unpacked image's files is no wait of the pipeline's.
		RemoveAfterExit: true,
	}
	if opts.BuildkitHost != "" {
		if err := remoteTLSFromEnv(&daemonCfg, os.LookupEnv); err != nil {
			return err
		}
	}
	// The daemon starts while the network-bound checks run; their errors
	// still come first, as in Kaniko.
	pending := startDaemonInBackground(ctx, daemonCfg)
	defer pending.Close()

	if err := publish.CheckPushPermissions(ctx, cfg); err != nil {
		return err
	}

	pins, err := (&BaseImageResolver{
		Registry: registry,
		Keychain: cfg.Keychain,
		Platform: opts.CustomPlatform,
		Log:      logrus.StandardLogger(),
	}).Resolve(ctx, parsed.BaseImages())
	if err != nil {
		return explainMistake(&BuildError{Err: err, Code: 1}, buildSite{context: contextName(opts), dockerfile: parsed, written: content})
	}
	sourcePolicy, err := SourcePolicy(pins)
	if err != nil {
		return err
	}

	layerCache, err := PlanLayerCache(ctx, LayerCacheConfig{Options: opts, Registry: registry, Keychain: cfg.Keychain})
	if err != nil {
		return err
	}
	shapes := layerCache.OpenShapes(ctx, cacheDirState, b.Version, logrus.StandardLogger())
	daemon, err := pending.Wait()
	if err != nil {
		return err
	}
	c, err := daemon.Client(ctx)
	if err != nil {
		return err
	}
	if opts.BuildkitHost != "" {
		if err := pinBasesForRemote(dockerfile, opts.BuildArgs, pins); err != nil {
			return fmt.Errorf("error parsing Dockerfile: %s: %w", b.dockerfile, err)
		}
	}

	// Not with what shaping adds to a stage's last layer (VOLUME
	// directories, one layer per stage).
	var unlinked []byte
	linked := false
	if volumeDirs == "" && !opts.SingleSnapshot {
		if unlinked, linked, err = stageLinkedCopies(dockerfile, opts.Target); err != nil {
			return fmt.Errorf("error parsing Dockerfile: %s: %w", b.dockerfile, err)
		}
	}

	req := SolveRequest{
		ContextDir:     b.buildContext.Dir,
		ContextName:    contextName(opts),
		DockerfilePath: dockerfile,
		Target:         opts.Target,
		BuildArgs:      keyValues(opts.BuildArgs),
		Labels:         keyValues(opts.Labels),
		Platform:       opts.CustomPlatform,
		NoCache:        !opts.Cache,
		SourcePolicy:   sourcePolicy,
		CacheImports:   layerCache.Imports,
		CacheExports:   layerCache.Exports,
		// Kaniko's RUN sees the host network; a private daemon grants it.
		// A remote daemon keeps the network its operator configured: asking
		// for network.host would fail on every daemon not started with
		// --allow-insecure-entitlement=network.host.
		HostNetwork:      opts.BuildkitHost == "",
		DockerConfigDir:  dockerConfig,
		RegistryTLS:      registry.AuthTLSConfigs(hosts),
		Keychain:         cfg.Keychain,
		Compression:      opts.Compression,
		CompressionLevel: opts.CompressionLevel,
		VolumeDirs:       volumeDirs,
		OutputDir:        filepath.Join(work, "oci"),
		ExtraTargets:     extraTargets,
		// Without --cache no cache holds BuildKit's layers; shaping
		// compresses uncompressed ones with gzip.
		UncompressedLayers: !opts.Cache && (opts.Compression == "" || opts.Compression == "gzip"),
		Progress: ProgressOptions{
			Logger:  logrus.StandardLogger(),
			Stdout:  b.Stdout,
			Stderr:  b.Stderr,
			Debug:   isDebug(opts.Verbosity),
			Steps:   stepNames(dockerfile, content),
			Secrets: secrets,
		},
	}
	if opts.SourceDateEpoch != nil {
		req.SourceDateEpoch = strconv.FormatInt(*opts.SourceDateEpoch, 10)
	}
	if linked {
		// A second solve without --link logs only what the first did not.
		req.Progress.said = map[string]bool{}
	}
	extra.apply(&req)
	shapes.LeaveOutOfExport(ctx, req.OutputDir)
	// stageDockerfile put Kaniko's ignore file next to the staged copy.
	dockerignore, err := os.ReadFile(dockerfile + ".dockerignore")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	solveAndShape := func(linked bool) (v1.Image, *publish.Statement, error) {
		res, err := Solve(ctx, c, req)
		if err != nil {
			if stopped := daemonStopped(ctx, daemon, err); stopped != nil {
				return nil, nil, fmt.Errorf("error building image: %w", stopped)
			}
			return nil, nil, explainMistake(err, buildSite{context: contextName(opts), dockerfile: parsed, written: content})
		}
		// The image is in the work dir now: the daemon stops while it is
		// shaped and published, unless it may have to build again.
		if !linked {
			if err := pending.StopIdle(); err != nil {
				return nil, nil, err
			}
		}
		img, provenance, err := exportedImage(res)
		if err != nil {
			return nil, nil, err
		}
		img, err = shapeLikeKaniko(ctx, img, opts, content, dockerignore, volumeDirs != "", linked, b.buildContext.Dir, filepath.Join(work, "shape"), shapes, layerHeadersOf(daemon))
		return img, provenance, err
	}
	img, provenance, err := solveAndShape(linked)
	if linked && errors.Is(err, shape.ErrLinkedCopyDiffers) {
		logrus.Debugf("%v; building the last COPY steps again without --link", err)
		if err := os.WriteFile(dockerfile, unlinked, 0o600); err != nil {
			return err
		}
		req.Progress.Steps = stepNames(dockerfile, content)
		img, provenance, err = solveAndShape(false)
	} else if linked && err == nil {
		err = pending.StopIdle()
	}
	if err != nil {
		return err
	}
	img = withAnnotations(img, opts.Annotations)
	if img, err = attest(ctx, opts, img, provenance, work); err != nil {
		return err
	}
	if err := plan.Publish(ctx, img); err != nil {
		return err
	}
	shapes.Save(ctx, pushedRepositories(registry, opts))
	return nil
}

// layerHeaderSource is an engine that noted the tar headers of the layers
// it unpacked (the embedded engine).
type layerHeaderSource interface {
	LayerHeaders(blob string) ([]*tar.Header, bool)
}

// layerHeadersOf is what shaping asks for a layer's headers: the engine's
// notes when it keeps them, else nil (shaping reads the layer).
func layerHeadersOf(d engine.Daemon) func(v1.Hash) ([]*tar.Header, bool) {
	src, ok := d.(layerHeaderSource)
	if !ok {
		return nil
	}
	return func(blob v1.Hash) ([]*tar.Header, bool) { return src.LayerHeaders(blob.String()) }
}

// daemonStopped explains a solve whose connection broke because the
// private daemon died (killed, out of memory); nil for any other failure.
func daemonStopped(ctx context.Context, daemon engine.Daemon, solveErr error) error {
	private, ok := daemon.(*local.Daemon)
	if !ok || ctx.Err() != nil {
		return nil
	}
	var wait time.Duration
	if status.Code(solveErr) == codes.Unavailable {
		wait = 5 * time.Second
	}
	return private.StoppedDuringBuild(wait)
}

// shapeLikeKaniko turns BuildKit's export into the image Kaniko would have
// written (layers, history, --reproducible), reusing what shapes holds; the
// layer files it spools into dir must outlive publishing.
func shapeLikeKaniko(ctx context.Context, img v1.Image, opts *flagmap.Options, dockerfile, dockerignore []byte, volumeDirs, linkedCopies bool, contextDir, dir string, shapes *ShapeCache, layerHeaders func(v1.Hash) ([]*tar.Header, bool)) (v1.Image, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	contextMatches, err := compat.ContextMatcher(contextDir, dockerignore)
	if err != nil {
		return nil, fmt.Errorf("reading the .dockerignore: %w", err)
	}
	// Kaniko never snapshots its own directory (the kaniko dir as KANIKO_DIR
	// or --kaniko-dir moves it), whatever a RUN left there.
	ignore := append(slices.Clone(opts.IgnorePaths), compat.KanikoDir(opts))
	if opts.IgnoreVarRun {
		ignore = append(ignore, "/var/run")
	}
	shapeOpts := shape.Options{
		WorkDir:          dir,
		Reproducible:     opts.Reproducible,
		SourceDateEpoch:  opts.SourceDateEpoch,
		Dockerfile:       dockerfile,
		Target:           opts.Target,
		BuildArgs:        opts.BuildArgs,
		IgnorePaths:      ignore,
		SingleSnapshot:   opts.SingleSnapshot,
		VolumeDirs:       volumeDirs,
		LinkedCopies:     linkedCopies,
		ContextSource:    contextSource(contextDir, os.Getuid(), os.Getgid()),
		ContextMatches:   contextMatches,
		CompressionLevel: opts.CompressionLevel,
		LayerHeaders:     layerHeaders,
	}
	if img, err = shapes.Input(ctx, img, &shapeOpts); err != nil {
		return nil, err
	}
	return shape.Kaniko(img, shapeOpts)
}

// stageDockerfile copies the Dockerfile (downloading a URL) into a private
// directory, as Kaniko copies it to <kaniko dir>/Dockerfile: a Dockerfile that
// .dockerignore excludes still builds, and only this file reaches BuildKit's
// dockerfile source. Kaniko's ignore file goes along as
// Dockerfile.dockerignore, which BuildKit's frontend prefers over the
// context's .dockerignore exactly as Kaniko does. It returns the copy's
// path and the Dockerfile's content.
func stageDockerfile(ctx context.Context, source, contextDir, dir string) (string, []byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	dt, err := compat.ReadDockerfile(ctx, source)
	if err != nil {
		return "", nil, err
	}
	staged := filepath.Join(dir, "Dockerfile")
	if err := os.WriteFile(staged, dt, 0o600); err != nil {
		return "", nil, err
	}
	if ignore, ok := compat.DockerignorePath(source, contextDir); ok {
		content, err := os.ReadFile(ignore)
		if err != nil {
			return "", nil, fmt.Errorf("reading %s: %w", ignore, err)
		}
		if err := os.WriteFile(staged+".dockerignore", content, 0o600); err != nil {
			return "", nil, err
		}
	}
	return staged, dt, nil
}

// absolutePaths is Kaniko's resolveRelativePaths: output files are relative
// to the working directory at start, except --oci-layout-path which Kaniko
// leaves as given.
func absolutePaths(cfg *publish.Config) error {
	for _, p := range []*string{&cfg.TarPath, &cfg.DigestFile, &cfg.ImageNameDigestFile, &cfg.ImageNameTagDigestFile} {
		if *p == "" || strings.Contains(*p, "://") {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	return nil
}

// daemonHosts lists the registries the daemon pulls from and kiln pushes to,
// so per-host settings reach buildkitd.toml.
func daemonHosts(registry *compat.RegistrySettings, baseImages []string, opts *flagmap.Options) compat.DaemonHosts {
	var hosts compat.DaemonHosts
	for _, ref := range baseImages {
		if r, err := name.ParseReference(ref, name.WeakValidation); err == nil {
			hosts.Pull = append(hosts.Pull, r.Context().RegistryStr())
		}
	}
	for _, dest := range opts.Destinations {
		if tag, err := registry.ParseTag(dest, false); err == nil {
			hosts.Push = append(hosts.Push, tag.RegistryStr())
		}
	}
	return hosts
}

// keyValues turns validated KEY=VALUE flags into a map; later keys win.
func keyValues(pairs []string) map[string]string {
	m := make(map[string]string, len(pairs))
	for _, kv := range pairs {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func isDebug(verbosity string) bool {
	return verbosity == "debug" || verbosity == "trace"
}

// workParent is where the private OCI layout goes: the kaniko dir when it is
// writable (it is in the image), else the system temp dir.
func workParent(opts *flagmap.Options) string {
	if dir := compat.KanikoDir(opts); writableDir(dir) {
		return dir
	}
	return os.TempDir()
}

// stateParent is where a private daemon keeps its state: the kaniko dir, then
// $XDG_RUNTIME_DIR, then the temp dir (empty lets StartDaemon choose it).
func stateParent(opts *flagmap.Options) string {
	if dir := compat.KanikoDir(opts); writableDir(dir) {
		return dir
	}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" && writableDir(dir) {
		return dir
	}
	return ""
}

func writableDir(dir string) bool {
	f, err := os.CreateTemp(dir, ".kiln-probe-")
	if err != nil {
		return false
	}
	f.Close()
	return os.Remove(f.Name()) == nil
}

// Environment for TLS to a remote --buildkit-host, named after buildctl's
// --tlscacert, --tlscert, --tlskey, --tlsservername and --tlsdir flags the way
// BUILDKIT_HOST stands for its --addr.
const (
	envBuildkitTLSCACert     = "BUILDKIT_TLSCACERT"
	envBuildkitTLSCert       = "BUILDKIT_TLSCERT"
	envBuildkitTLSKey        = "BUILDKIT_TLSKEY"
	envBuildkitTLSServerName = "BUILDKIT_TLSSERVERNAME"
	envBuildkitTLSDir        = "BUILDKIT_TLSDIR"
)

// remoteTLSFromEnv fills cfg's TLS files from the environment. Like
// buildctl's --tlsdir, BUILDKIT_TLSDIR holds ca.pem, cert.pem and key.pem (or
// a Kubernetes TLS secret's ca.crt, tls.crt and tls.key) and excludes the
// single-file variables.
func remoteTLSFromEnv(cfg *engine.Config, lookup func(string) (string, bool)) error {
	get := func(key string) string { v, _ := lookup(key); return v }
	cfg.TLSServerName = get(envBuildkitTLSServerName)
	cfg.TLSCACert, cfg.TLSCert, cfg.TLSKey = get(envBuildkitTLSCACert), get(envBuildkitTLSCert), get(envBuildkitTLSKey)
	dir := get(envBuildkitTLSDir)
	if dir == "" {
		return nil
	}
	if cfg.TLSCACert != "" || cfg.TLSCert != "" || cfg.TLSKey != "" {
		return fmt.Errorf("%s cannot be combined with %s, %s or %s: set either the directory or the files",
			envBuildkitTLSDir, envBuildkitTLSCACert, envBuildkitTLSCert, envBuildkitTLSKey)
	}
	oneOf := func(names ...string) (string, error) {
		for _, n := range names {
			if p := filepath.Join(dir, n); fileExists(p) {
				return p, nil
			}
		}
		return "", fmt.Errorf("%s=%s holds neither %s: put the BuildKit client's TLS files there", envBuildkitTLSDir, dir, strings.Join(names, " nor "))
	}
	var err error
	if cfg.TLSCACert, err = oneOf("ca.pem", "ca.crt"); err != nil {
		return err
	}
	if cfg.TLSCert, err = oneOf("cert.pem", "tls.crt"); err != nil {
		return err
	}
	cfg.TLSKey, err = oneOf("key.pem", "tls.key")
	return err
}

func fileExists(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir()
}
