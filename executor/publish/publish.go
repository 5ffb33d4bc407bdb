// Package publish writes a built image to every output Kaniko users ask for:
// digest and name files, an OCI layout, a docker tarball, registries and
// $BUILDER_OUTPUT. Each output is one Publisher; NewPlan composes them in
// Kaniko's order so side effects happen exactly when Kaniko's do.
package publish

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sirupsen/logrus"

	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/flagmap"
)

// Publisher sends an image to one output.
type Publisher interface {
	Publish(ctx context.Context, img v1.Image) error
}

// Config is what publishing needs from a Kaniko invocation. Paths are used as
// given: making them absolute (Kaniko does so for all but OCILayoutPath) is
// the caller's job.
type Config struct {
	Destinations                 []string
	NoPush                       bool
	TarPath                      string
	OCILayoutPath                string
	DigestFile                   string // a path or an https:// URL (HTTP PUT)
	ImageNameDigestFile          string // a path or an https:// URL (HTTP PUT)
	ImageNameTagDigestFile       string // a path or an https:// URL (HTTP PUT)
	PushRetry                    int
	PushIgnoreImmutableTagErrors bool
	SkipPushPermissionCheck      bool
	CacheRepo                    string
	NoPushCache                  bool
	BuilderOutput                string // $BUILDER_OUTPUT directory, "" for none

	Registry *compat.RegistrySettings
	Keychain authn.Keychain // nil means anonymous
	Signer   *Signer        // signs each destination after its push; nil signs nothing

	Log        logrus.FieldLogger                               // nil means logrus' standard logger
	Sleep      func(ctx context.Context, d time.Duration) error // nil means a timer; tests make it instant
	HTTPClient *http.Client                                     // for https:// outputs; nil means http.DefaultClient

	// remoteOptions are appended to every registry request's options; tests
	// use them to shorten go-containerregistry's own retry backoff.
	remoteOptions []remote.Option
}

// FromOptions copies the output flags and $BUILDER_OUTPUT of a parsed
// invocation; the caller adds Registry, Keychain and Log.
func FromOptions(opts *flagmap.Options) Config {
	return Config{
		Destinations:                 opts.Destinations,
		NoPush:                       opts.NoPush,
		TarPath:                      opts.TarPath,
		OCILayoutPath:                opts.OCILayoutPath,
		DigestFile:                   opts.DigestFile,
		ImageNameDigestFile:          opts.ImageNameDigestFile,
		ImageNameTagDigestFile:       opts.ImageNameTagDigestFile,
		PushRetry:                    opts.PushRetry,
		PushIgnoreImmutableTagErrors: opts.PushIgnoreImmutableTagError,
		SkipPushPermissionCheck:      opts.SkipPushPermissionCheck,
		CacheRepo:                    opts.CacheRepo,
		NoPushCache:                  opts.NoPushCache,
		BuilderOutput:                opts.Env.BuilderOutput,
	}
}

// Plan is a sequence of publishers run in order; it is a Publisher itself.
type Plan []Publisher

// Publish runs every publisher in order and stops at the first error.
func (p Plan) Publish(ctx context.Context, img v1.Image) error {
	for _, publisher := range p {
		if err := publisher.Publish(ctx, img); err != nil {
			return err
		}
	}
	return nil
}

// NewPlan lays out Kaniko's order of side effects: digest file, OCI layout,
// name files, tarball, then (unless --no-push) each destination in turn and
// $BUILDER_OUTPUT. Everything before the pushes happens under --no-push too.
// It parses the destinations, so call it before the build to fail early.
func NewPlan(cfg Config) (Plan, error) {
	cfg = cfg.withDefaults()
	if cfg.Registry == nil {
		return nil, errors.New("publish: Config.Registry is not set")
	}
	if !cfg.NoPush && len(cfg.Destinations) == 0 {
		return nil, errors.New("you must provide --destination, or use --no-push")
	}
	destinations, err := parseDestinations(cfg)
	if err != nil {
		return nil, err
	}

	var plan Plan
	if cfg.DigestFile != "" {
		plan = append(plan, cfg.digestOutput("--digest-file", cfg.DigestFile, compat.DigestFileContent))
	}
	if cfg.OCILayoutPath != "" {
		plan = append(plan, ociLayout{path: cfg.OCILayoutPath})
	}
	// One content for both name files: Kaniko's quirk, see ImageNameDigestContent.
	withTag := cfg.ImageNameTagDigestFile != ""
	nameContent := func(d v1.Hash) []byte { return compat.ImageNameDigestContent(destinations, d, withTag) }
	if cfg.ImageNameDigestFile != "" {
		plan = append(plan, cfg.digestOutput("--image-name-with-digest-file", cfg.ImageNameDigestFile, nameContent))
	}
	if cfg.ImageNameTagDigestFile != "" {
		plan = append(plan, cfg.digestOutput("--image-name-tag-with-digest-file", cfg.ImageNameTagDigestFile, nameContent))
	}
	if cfg.TarPath != "" {
		tags := destinations
		if len(tags) == 0 {
			tags = []name.Tag{mustTag(compat.UnsetDestination)}
		}
		plan = append(plan, tarballOutput{path: cfg.TarPath, tags: tags})
	}
	if cfg.NoPush {
		return append(plan, noPushNotice{log: cfg.Log}), nil
	}
	for _, tag := range destinations {
		plan = append(plan, &push{cfg: cfg, tag: tag})
		if cfg.Signer != nil {
			plan = append(plan, signing{cfg: cfg, tag: tag})
		}
	}
	if cfg.BuilderOutput != "" {
		plan = append(plan, builderOutput{dir: cfg.BuilderOutput, tags: destinations})
	}
	return plan, nil
}

func (cfg Config) withDefaults() Config {
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Keychain == nil {
		cfg.Keychain = anonymousKeychain{}
	}
	return cfg
}

func parseDestinations(cfg Config) ([]name.Tag, error) {
	tags := make([]name.Tag, 0, len(cfg.Destinations))
	for _, destination := range cfg.Destinations {
		tag, err := cfg.Registry.ParseTag(destination, false)
		if err != nil {
			return nil, fmt.Errorf("--destination %q: %v (give one image reference like registry.example.com/team/app:tag per --destination)", destination, err)
		}
		tags = append(tags, tag)
	}
	return tags, nil
}

func mustTag(ref string) name.Tag {
	tag, err := name.NewTag(ref, name.WeakValidation)
	if err != nil {
		panic(err)
	}
	return tag
}

func sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type anonymousKeychain struct{}

func (anonymousKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.Anonymous, nil
}

// noPushNotice marks where --no-push stops the plan, with Kaniko's log line.
type noPushNotice struct{ log logrus.FieldLogger }

func (n noPushNotice) Publish(context.Context, v1.Image) error {
	n.log.Info("Skipping push to container registry due to --no-push flag")
	return nil
}
