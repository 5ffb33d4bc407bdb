package executor

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/containerd/platforms"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	gateway "github.com/moby/buildkit/frontend/gateway/client"
	"github.com/moby/buildkit/session"
	"github.com/sirupsen/logrus"
)

// WarmOptions configure Warm, kiln's /kaniko/warmer.
type WarmOptions struct {
	Images   []string // references as written after FROM
	CacheDir string   // created when missing, as Kaniko's warmer does
	Platform string   // e.g. linux/amd64; empty is the host's
	Registry *compat.RegistrySettings
	// DockerConfigDir holds config.json with registry credentials.
	DockerConfigDir string
	// StateParent and BinDir are as in engine.Config.
	StateParent, BinDir string
	Logger              logrus.FieldLogger
}

// Warm fills the --cache-dir state: it starts a private daemon on that
// BuildKit root and pulls and unpacks each image into it, so builds using
// the same --cache-dir do not download or unpack those base images again.
// It writes no Kaniko-format tarballs (<cache-dir>/sha256:<hex>), which
// kiln's executor does not read. Like Kaniko's warmer it fails only when
// every image failed. It waits for a build holding the state to finish.
func Warm(ctx context.Context, opts WarmOptions) error {
	if opts.Logger == nil {
		opts.Logger = logrus.StandardLogger()
	}
	if len(opts.Images) == 0 {
		return errors.New("You must select at least one image to cache or a dockerfilepath to parse")
	}
	platform := platforms.DefaultSpec()
	if opts.Platform != "" {
		p, err := platforms.Parse(opts.Platform)
		if err != nil {
			return fmt.Errorf("--customPlatform %s: %v (give os/arch[/variant], e.g. linux/amd64)", opts.Platform, err)
		}
		platform = p
	}
	if err := os.MkdirAll(opts.CacheDir, 0o755); err != nil {
		return fmt.Errorf("--cache-dir %s: %w", opts.CacheDir, err)
	}
	state, err := LockCacheDirState(ctx, opts.CacheDir, os.Geteuid() != 0, true)
	if err != nil {
		return err
	}
	defer state.Release()

	var hosts compat.DaemonHosts
	for _, image := range opts.Images {
		ref, err := name.ParseReference(image, name.WeakValidation)
		if err != nil {
			return fmt.Errorf("--image %s: %v (give a reference such as registry/repository:tag)", image, err)
		}
		hosts.Pull = append(hosts.Pull, ref.Context().RegistryStr())
	}
	daemon, err := StartDaemon(ctx, engine.Config{
		StateParent:        opts.StateParent,
		BinDir:             opts.BinDir,
		Root:               state.Root,
		PullOnly:           true,
		RegistryConfigTOML: opts.Registry.BuildkitdTOML(hosts),
		Logger:             opts.Logger,
	})
	if err != nil {
		return err
	}
	defer daemon.Close()
	c, err := daemon.Client(ctx)
	if err != nil {
		return err
	}
	// Kaniko's warmer pulls with the executor's keychain, helpers included.
	keychain := compat.NewKeychain(compat.CredentialOptions{DockerConfigDir: opts.DockerConfigDir, Transport: opts.Registry.Transport})
	auth, err := authSession(SolveRequest{DockerConfigDir: opts.DockerConfigDir, RegistryTLS: opts.Registry.AuthTLSConfigs(hosts), Keychain: keychain})
	if err != nil {
		return err
	}

	var failures []error
	for _, image := range opts.Images {
		opts.Logger.Infof("Retrieving image manifest %s", image)
		dgst, err := warmImage(ctx, c, auth, image, platform)
		if err != nil {
			opts.Logger.Warnf("Error while trying to warm image: %s %v", image, err)
			failures = append(failures, fmt.Errorf("%s: %w", image, err))
			continue
		}
		opts.Logger.Infof("Cached image %s (%s) in %s", image, dgst, opts.CacheDir)
	}
	if len(failures) == len(opts.Images) {
		return fmt.Errorf("no image could be cached: %w", errors.Join(failures...))
	}
	return nil
}

// warmImage pulls image into the daemon's store and unpacks it: reading its
// root directory mounts the snapshot, which BuildKit otherwise does lazily.
func warmImage(ctx context.Context, c *client.Client, auth session.Attachable, image string, platform platforms.Platform) (string, error) {
	var resolved string
	_, err := c.Build(ctx, client.SolveOpt{Session: []session.Attachable{auth}}, "kiln-warmer",
		func(ctx context.Context, gw gateway.Client) (*gateway.Result, error) {
			_, dgst, _, err := gw.ResolveImageConfig(ctx, image, sourceresolver.Opt{
				ImageOpt: &sourceresolver.ResolveImageOpt{Platform: &platform},
			})
			if err != nil {
				return nil, err
			}
			resolved = dgst.String()
			def, err := llb.Image(image, llb.Platform(platform)).Marshal(ctx, llb.Platform(platform))
			if err != nil {
				return nil, err
			}
			res, err := gw.Solve(ctx, gateway.SolveRequest{Definition: def.ToPB(), Evaluate: true})
			if err != nil {
				return nil, err
			}
			ref, err := res.SingleRef()
			if err != nil {
				return nil, err
			}
			if _, err := ref.ReadDir(ctx, gateway.ReadDirRequest{Path: "/"}); err != nil {
				return nil, err
			}
			return res, nil
		}, nil)
	return resolved, err
}
