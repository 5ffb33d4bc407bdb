package executor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/docker/cli/cli/config"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
	"github.com/moby/buildkit/session/filesync"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	spb "github.com/moby/buildkit/sourcepolicy/pb"
	"github.com/moby/buildkit/util/entitlements"
	"github.com/tonistiigi/fsutil"
	fstypes "github.com/tonistiigi/fsutil/types"
	"golang.org/x/sync/errgroup"

	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/compat/shape"
)

// SolveRequest is one Dockerfile build exported as an OCI layout.
type SolveRequest struct {
	ContextDir string // local build context directory
	// ContextName is the context as the user gave it, for messages;
	// ContextDir when empty.
	ContextName    string
	DockerfilePath string // path of the Dockerfile file itself
	Target         string
	BuildArgs      map[string]string
	Labels         map[string]string
	Platform       string // e.g. linux/amd64; empty builds for the daemon's platform
	NoCache        bool
	// HostNetwork runs RUN in the host network like Kaniko; the daemon must
	// allow the network.host entitlement (private daemons do).
	HostNetwork bool
	// SourceDateEpoch (decimal seconds) becomes build-arg:SOURCE_DATE_EPOCH.
	SourceDateEpoch string

	// DockerConfigDir holds config.json with registry credentials; empty
	// means docker's default ($DOCKER_CONFIG, else ~/.docker).
	DockerConfigDir string
	// RegistryTLS is per-host TLS for the client side of registry auth.
	RegistryTLS map[string]*authprovider.AuthTLSConfig
	// Keychain answers the daemon's registry auth when set (config.json
	// plus the credential helpers); nil reads DockerConfigDir only.
	Keychain authn.Keychain

	Compression      string // "gzip" (default) or "zstd"
	CompressionLevel int    // <= 0: gzip level 1 (Kaniko's BestSpeed), zstd's default
	// UncompressedLayers exports the layers BuildKit makes uncompressed:
	// shaping re-tars and compresses each anyway. Only without a layer
	// cache, whose blobs (and the shaped layers keyed by them) are
	// compressed ones, and for gzip only (shaping then writes gzip).
	UncompressedLayers bool
	// SourcePolicy pins base images to where kiln resolved them (see
	// BaseImageResolver); nil lets BuildKit resolve them.
	SourcePolicy *spb.Policy
	// CacheImports and CacheExports are BuildKit cache entries (see
	// PlanLayerCache).
	CacheImports []client.CacheOptionsEntry
	CacheExports []client.CacheOptionsEntry
	// VolumeDirs is the empty directory sent as the named context
	// compat.VolumeDirsContext (see stageVolumeDirs); "" sends none.
	VolumeDirs string
	// OutputDir receives the OCI layout (index.json, blobs/); the build
	// pushes nothing itself.
	OutputDir string
	// Secrets serve RUN --mount=type=secret by id (the fork's --secret);
	// nil attaches no secrets provider.
	Secrets map[string][]byte
	// Provenance is BuildKit's provenance mode ("min" or "max"); it makes
	// the export an index with an attestation manifest, in OCI media types
	// as BuildKit requires. "" asks for none.
	Provenance string
	// FrontendOpts are raw frontend options applied after kiln's own
	// (Kimia's --buildkit-opt).
	FrontendOpts map[string]string
	// ExtraTargets are the stages Kaniko builds that Target does not need
	// (compat.Dockerfile.ExtraStages by TargetName), in Kaniko's order:
	// built too, not exported (see solveWithExtraStages).
	ExtraTargets []string

	Progress ProgressOptions

	unreadable *unreadableFiles // set by Solve
}

// SolveResult names the image written into the layout.
type SolveResult struct {
	ManifestDigest string
	ConfigDigest   string
	LayoutDir      string
}

// Solve runs the Dockerfile frontend and exports the image as an OCI
// layout with Docker schema 2 media types. Build failures are *BuildError.
func Solve(ctx context.Context, c *client.Client, req SolveRequest) (*SolveResult, error) {
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	req.unreadable = newUnreadableFiles(stop, cmp.Or(req.ContextName, req.ContextDir))
	req.Progress.notStarted = newNotStartedSteps()
	opt, err := solveOpt(req)
	if err != nil {
		return nil, err
	}
	statusCh := make(chan *client.SolveStatus)
	var resp *client.SolveResponse
	eg, egCtx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		var err error
		if len(req.ExtraTargets) == 0 {
			resp, err = c.Solve(egCtx, nil, *opt, statusCh)
		} else {
			resp, err = solveWithExtraStages(egCtx, c, req, *opt, statusCh)
		}
		return err
	})
	eg.Go(func() error {
		// Keep draining after a display error so Solve never blocks.
		return showProgress(statusCh, req.Progress)
	})
	err = eg.Wait()
	if unreadable := req.unreadable.Err(); unreadable != nil {
		return nil, &BuildError{Err: unreadable, Code: 1}
	}
	if err != nil {
		be := newBuildError(err)
		if reason := req.Progress.notStarted.reason(); reason != "" && be.Code == 1 {
			be.Err = &notStartedError{reason: reason, err: err}
		}
		return nil, be
	}
	res := &SolveResult{
		ManifestDigest: resp.ExporterResponse[exptypes.ExporterImageDigestKey],
		ConfigDigest:   resp.ExporterResponse[exptypes.ExporterImageConfigDigestKey],
		LayoutDir:      req.OutputDir,
	}
	if res.ManifestDigest == "" {
		return nil, errors.New("error building image: BuildKit reported no image digest")
	}
	return res, nil
}

func solveOpt(req SolveRequest) (*client.SolveOpt, error) {
	if req.OutputDir == "" {
		return nil, errors.New("solve: no output directory for the OCI layout")
	}
	contextFS, err := fsutil.NewFS(req.ContextDir)
	if err != nil {
		return nil, fmt.Errorf("build context %s: %w", req.ContextDir, err)
	}
	dockerfileFS, err := fsutil.NewFS(filepath.Dir(req.DockerfilePath))
	if err != nil {
		return nil, fmt.Errorf("dockerfile %s: %w", req.DockerfilePath, err)
	}
	if contextFS, err = keepOwners(contextFS, os.Getuid(), os.Getgid()); err != nil {
		return nil, err
	}
	contextFS = req.unreadable.watch(contextFS)
	auth, err := authSession(req)
	if err != nil {
		return nil, err
	}
	dirs := filesync.StaticDirSource{"context": contextFS, "dockerfile": dockerfileFS}
	if req.VolumeDirs != "" {
		if dirs[compat.VolumeDirsContext], err = fsutil.NewFS(req.VolumeDirs); err != nil {
			return nil, err
		}
	}
	attachables := []session.Attachable{auth, filesync.NewFSSyncProvider(dirs)}
	if req.Secrets != nil {
		attachables = append(attachables, secretsprovider.FromMap(req.Secrets))
	}
	opt := &client.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: frontendAttrs(req),
		// Not LocalMounts: BuildKit's client resets every synced file to
		// 0:0, where Kaniko's COPY keeps the context's owners.
		Session:      attachables,
		SourcePolicy: req.SourcePolicy,
		CacheImports: req.CacheImports,
		CacheExports: req.CacheExports,
		Exports: []client.ExportEntry{{
			Type:      client.ExporterOCI,
			Attrs:     exporterAttrs(req),
			OutputDir: req.OutputDir,
		}},
	}
	if req.HostNetwork {
		opt.AllowedEntitlements = []string{string(entitlements.EntitlementNetworkHost)}
	}
	return opt, nil
}

// keepOwners sends the context with its files' uid/gid, as Kaniko's COPY
// keeps them. Run by a non-root user (rootless BuildKit), that user's own
// files are root's, as they are inside the rootless user namespace: a CI
// checkout owned by the job's user builds like a root-owned one under
// Kaniko. Other owners must lie within the user's subordinate id range.
func keepOwners(fs fsutil.FS, uid, gid int) (fsutil.FS, error) {
	if uid == 0 {
		return fs, nil
	}
	return fsutil.NewFilterFS(fs, &fsutil.FilterOpt{Map: func(_ string, st *fstypes.Stat) fsutil.MapResult {
		st.Uid = uint32(mappedOwner(st.Uid, uint32(uid)))
		st.Gid = uint32(mappedOwner(st.Gid, uint32(gid)))
		return fsutil.MapResultKeep
	}})
}

// contextSource describes build context paths for shaping with the owners
// keepOwners sends.
func contextSource(dir string, uid, gid int) func(rel string) (shape.Source, error) {
	return func(rel string) (shape.Source, error) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		fi, err := os.Lstat(p)
		if err != nil {
			return shape.Source{}, err
		}
		src := shape.Source{Mode: fi.Mode()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			src.Uid, src.Gid = mappedOwner(st.Uid, uint32(uid)), mappedOwner(st.Gid, uint32(gid))
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			if src.Link, err = os.Readlink(p); err != nil {
				return shape.Source{}, err
			}
		}
		return src, nil
	}
}

// mappedOwner is id as the build sees it: the invoking non-root user's own
// id is root's (see keepOwners).
func mappedOwner(id, own uint32) int {
	if own != 0 && id == own {
		return 0
	}
	return int(id)
}

// stageVolumeDirs rewrites the staged Dockerfile so that VOLUME paths exist
// for later instructions (compat.WithVolumeDirs) and returns the empty
// directory its COPYs read, or "" when the Dockerfile declares no VOLUME.
func stageVolumeDirs(staged string, content []byte, workDir string) (string, error) {
	rewritten, changed, err := compat.WithVolumeDirs(content)
	if err != nil || !changed {
		return "", err
	}
	dir := filepath.Join(workDir, compat.VolumeDirsContext)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	// The umask may have narrowed it; Kaniko's VOLUME creates 0755.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	return dir, os.WriteFile(staged, rewritten, 0o600)
}

func frontendAttrs(req SolveRequest) map[string]string {
	attrs := map[string]string{
		"filename": filepath.Base(req.DockerfilePath),
		// Kaniko ignores `# syntax=` and never pulls a frontend image; any
		// cmdline value keeps the built-in frontend.
		"cmdline": "",
		// Kaniko has no Dockerfile linter; `# check=error=true` must not fail builds.
		"build-arg:BUILDKIT_DOCKERFILE_CHECK": "skip=all",
	}
	if req.Target != "" {
		attrs["target"] = req.Target
	}
	if req.Platform != "" {
		attrs["platform"] = req.Platform
	}
	if req.NoCache {
		attrs["no-cache"] = ""
	}
	if req.HostNetwork {
		attrs["force-network-mode"] = "host"
	}
	if req.VolumeDirs != "" {
		attrs["context:"+compat.VolumeDirsContext] = "local:" + compat.VolumeDirsContext
	}
	if req.SourceDateEpoch != "" {
		attrs["build-arg:SOURCE_DATE_EPOCH"] = req.SourceDateEpoch
	}
	for _, k := range compat.AutomaticArgs {
		attrs["build-arg:"+k] = "" // unset in Kaniko; --build-arg still wins
	}
	for k, v := range req.BuildArgs {
		attrs["build-arg:"+k] = v
	}
	for k, v := range req.Labels {
		attrs["label:"+k] = v
	}
	if req.Provenance != "" {
		attrs["attest:provenance"] = "mode=" + req.Provenance
	}
	for k, v := range req.FrontendOpts {
		attrs[k] = v
	}
	return attrs
}

func exporterAttrs(req SolveRequest) map[string]string {
	attrs := compressionAttrs(req.Compression, req.CompressionLevel)
	if req.UncompressedLayers {
		attrs = map[string]string{"compression": "uncompressed"}
	}
	attrs["tar"] = "false"
	attrs["oci-mediatypes"] = strconv.FormatBool(req.Provenance != "") // Kaniko writes Docker schema 2; attestations need OCI
	return attrs
}

// compressionAttrs are the exporter attributes for --compression and
// --compression-level.
func compressionAttrs(compression string, level int) map[string]string {
	if compression == "" {
		compression = "gzip"
	}
	attrs := map[string]string{"compression": compression}
	switch {
	case level > 0:
		attrs["compression-level"] = strconv.Itoa(level)
	case compression == "gzip":
		attrs["compression-level"] = "1"
	}
	return attrs
}

func authSession(req SolveRequest) (session.Attachable, error) {
	if req.Keychain != nil {
		return authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
			AuthConfigProvider: compat.SessionAuthConfig(req.Keychain),
			TLSConfigs:         req.RegistryTLS,
		}), nil
	}
	dir := req.DockerConfigDir
	if dir == "" {
		dir = config.Dir()
	}
	cfg, err := config.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("reading registry credentials from %s: %w", filepath.Join(dir, config.ConfigFileName), err)
	}
	return authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
		AuthConfigProvider: authprovider.LoadAuthConfig(cfg),
		TLSConfigs:         req.RegistryTLS,
	}), nil
}
