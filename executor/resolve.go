package executor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	spb "github.com/moby/buildkit/sourcepolicy/pb"
	"github.com/sirupsen/logrus"

	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/executor/helper"
)

// BaseImageResolver finds base images the way Kaniko does, which BuildKit's
// resolver cannot: --registry-map and --registry-mirror replacements tried in
// order, each with --image-download-retry, then the original registry unless
// --skip-default-registry-fallback; plain HTTP per --insecure-pull and
// --insecure-registry for each registry tried.
type BaseImageResolver struct {
	Registry *compat.RegistrySettings
	Keychain authn.Keychain
	// Platform is --custom-platform; when set, an index must hold it, as
	// Kaniko pulls that platform's manifest.
	Platform string
	Log      logrus.FieldLogger
	// Sleep waits between retries; nil sleeps for real.
	Sleep func(ctx context.Context, d time.Duration) error
}

// PinnedImage is a base image as the Dockerfile names it and where kiln
// found it: BuildKit's spelling of host/repository[:tag]@digest.
type PinnedImage struct {
	Image  string
	Pinned string
}

// Resolve looks up every image, in order, and fails on the first that
// cannot be found.
func (r *BaseImageResolver) Resolve(ctx context.Context, images []string) ([]PinnedImage, error) {
	var pins []PinnedImage
	for _, image := range images {
		pinned, err := r.resolve(ctx, image)
		if err != nil {
			return nil, err
		}
		pins = append(pins, PinnedImage{Image: image, Pinned: pinned})
	}
	return pins, nil
}

func (r *BaseImageResolver) resolve(ctx context.Context, image string) (string, error) {
	r.Log.Infof("Retrieving image manifest %s", image)
	ref, err := name.ParseReference(image, name.WeakValidation)
	if err != nil {
		return "", fmt.Errorf("base image %q is not a valid image reference: %v", image, err)
	}
	original := ref.Context().RegistryStr()
	mappings := r.Registry.Mappings(original)
	for _, mapping := range mappings {
		host, prefix, _ := strings.Cut(mapping, "/")
		if prefix != "" && !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		repo, err := name.NewRepository(host+"/"+prefix+ref.Context().RepositoryStr(), r.Registry.NameOptions(host, true)...)
		if err != nil {
			return "", fmt.Errorf("--registry-map %s=%s: %v", original, mapping, err)
		}
		mapped := withRepository(ref, repo)
		r.Log.Infof("Retrieving image %s from mapped registry %s", mapped, host)
		pinned, err := r.fetchWithRetries(ctx, mapped)
		if err == nil {
			return pinned, nil
		}
		r.Log.Warnf("Failed to retrieve image %s from remapped registry %s: %s. Will try with the next registry, or fallback to the original registry.", mapped, host, helper.OneLine(err.Error()))
	}
	if len(mappings) > 0 && r.Registry.SkipDefaultRegistryFallback {
		return "", fmt.Errorf("image not found on any configured mapped registries for %s", ref)
	}
	registry, err := name.NewRegistry(original, r.Registry.NameOptions(original, true)...)
	if err != nil {
		return "", fmt.Errorf("base image %q: %v", image, err)
	}
	repo := ref.Context()
	repo.Registry = registry
	ref = withRepository(ref, repo)
	r.Log.Infof("Retrieving image %s from registry %s", ref, original)
	if digest, ok := ref.(name.Digest); ok {
		// Already pinned: BuildKit may hold it (a warmed --cache-dir) even
		// when the registry is unreachable, as Kaniko's cache would.
		return buildkitName(ref) + "@" + digest.DigestStr(), nil
	}
	pinned, err := r.fetchWithRetries(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("retrieving base image %s: %s%s", image, helper.OneLine(err.Error()), plainHTTPHint(err, original))
	}
	return pinned, nil
}

// plainHTTPHint names the flags for a registry that answered HTTPS with HTTP.
func plainHTTPHint(err error, host string) string {
	if !strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return ""
	}
	return fmt.Sprintf(" (for a plain-HTTP registry pass --insecure-pull or --insecure-registry=%s)", host)
}

// fetchWithRetries is one Kaniko pull: --image-download-retry extra
// attempts, waiting 1s, 2s, 4s... between them.
func (r *BaseImageResolver) fetchWithRetries(ctx context.Context, ref name.Reference) (string, error) {
	pinned, err := r.fetch(ctx, ref)
	retries := r.Registry.ImageDownloadRetry
	for i := 0; err != nil && i < retries && ctx.Err() == nil; i++ {
		delay := time.Duration(1<<i) * time.Second
		r.Log.Warnf("Retrying operation after %s due to %s", delay, helper.OneLine(err.Error()))
		if sleepErr := r.sleep(ctx, delay); sleepErr != nil {
			return "", sleepErr
		}
		pinned, err = r.fetch(ctx, ref)
	}
	if err != nil && retries > 0 {
		return "", fmt.Errorf("unable to complete operation after %d attempts, last error: %w", retries, err)
	}
	return pinned, err
}

// fetch reads the manifest (or index) ref names and returns the pin. The
// index digest is kept, so BuildKit still picks each stage's platform.
func (r *BaseImageResolver) fetch(ctx context.Context, ref name.Reference) (string, error) {
	host := ref.Context().RegistryStr()
	opts := r.Registry.RemoteOptions(ctx, host, r.Keychain)
	if r.Platform != "" {
		platform, err := v1.ParsePlatform(r.Platform)
		if err != nil {
			return "", fmt.Errorf("--custom-platform %s: %v", r.Platform, err)
		}
		opts = append(opts, remote.WithPlatform(*platform))
	}
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return "", err
	}
	if r.Platform != "" && desc.MediaType.IsIndex() {
		if _, err := desc.Image(); err != nil {
			return "", err
		}
	}
	return buildkitName(ref) + "@" + desc.Digest.String(), nil
}

func (r *BaseImageResolver) sleep(ctx context.Context, d time.Duration) error {
	if r.Sleep != nil {
		return r.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func withRepository(ref name.Reference, repo name.Repository) name.Reference {
	switch r := ref.(type) {
	case name.Tag:
		r.Repository = repo
		return r
	case name.Digest:
		r.Repository = repo
		return r
	}
	return ref
}

// buildkitName spells ref's repository and tag (not its digest) as BuildKit
// does: Docker Hub is docker.io.
func buildkitName(ref name.Reference) string {
	host := ref.Context().RegistryStr()
	if host == compat.DockerHub {
		host = "docker.io"
	}
	n := host + "/" + ref.Context().RepositoryStr()
	if tag, ok := ref.(name.Tag); ok {
		n += ":" + tag.TagStr()
	}
	return n
}

// SourcePolicy makes BuildKit use the pinned images: a CONVERT rule per
// spelling the Dockerfile frontend gives an image (with and without the
// implied :latest). nil when there is nothing to pin.
func SourcePolicy(pins []PinnedImage) (*spb.Policy, error) {
	if len(pins) == 0 {
		return nil, nil
	}
	policy := &spb.Policy{Version: 1}
	var seen []string
	for _, pin := range pins {
		named, err := reference.ParseNormalizedNamed(pin.Image)
		if err != nil {
			return nil, fmt.Errorf("base image %q is not a valid image reference: %v", pin.Image, err)
		}
		for _, spelling := range []string{named.String(), reference.TagNameOnly(named).String()} {
			id := "docker-image://" + spelling
			if slices.Contains(seen, id) || spelling == pin.Pinned {
				continue
			}
			seen = append(seen, id)
			policy.Rules = append(policy.Rules, &spb.Rule{
				Action:   spb.PolicyAction_CONVERT,
				Selector: &spb.Selector{Identifier: id, MatchType: spb.MatchType_EXACT},
				Updates:  &spb.Update{Identifier: "docker-image://" + pin.Pinned},
			})
		}
	}
	return policy, nil
}
