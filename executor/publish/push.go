package publish

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/kilnbuild/kiln/compat"
)

// immutableTagErrors are the registry messages --push-ignore-immutable-tag-errors
// treats as success: Artifact Registry's and ECR's.
var immutableTagErrors = []string{
	"The repository has enabled tag immutability",
	"cannot be overwritten because the repository is immutable",
}

// push writes the image to one destination, retrying --push-retry times
// with Kaniko's backoff of 1s, 2s, 4s...
type push struct {
	cfg Config
	tag name.Tag
}

func (p *push) Publish(ctx context.Context, img v1.Image) error {
	digest, err := publishedDigest(img)
	if err != nil {
		return fmt.Errorf("failed to push to destination %s: computing the image digest: %w", p.tag, err)
	}
	pushed := p.tag.Context().Digest(digest.String())
	options := append(p.cfg.Registry.RemoteOptions(ctx, p.tag.RegistryStr(), p.cfg.Keychain), p.cfg.remoteOptions...)
	log := p.cfg.Log

	log.Infof("Pushing image to %s", p.tag)
	attempt := func() error {
		err := writeImageOrIndex(p.tag, img, options)
		if err == nil {
			log.Infof("Pushed %s", pushed)
			return nil
		}
		if p.cfg.PushIgnoreImmutableTagErrors && isImmutableTagError(err) {
			log.Infof("Immutable tag error ignored for %s", pushed)
			return nil
		}
		return err
	}
	err = attempt()
	attempts := 1
	for retry := 0; err != nil && retry < p.cfg.PushRetry && ctx.Err() == nil; retry++ {
		delay := time.Duration(1<<retry) * time.Second
		log.Warnf("Retrying the push to %s in %s: %v", p.tag, delay, oneLine(err))
		if sleepErr := p.cfg.Sleep(ctx, delay); sleepErr != nil {
			break
		}
		err = attempt()
		attempts++
	}
	if err != nil {
		return fmt.Errorf("failed to push to destination %s: %s%s", p.tag, oneLine(err), attemptsNote(attempts, p.cfg.PushRetry))
	}
	return nil
}

// attemptsNote tells how often a failed push was tried when --push-retry
// asked for more than one attempt.
func attemptsNote(attempts, pushRetry int) string {
	if pushRetry == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d of %d attempts made, --push-retry=%d)", attempts, pushRetry+1, pushRetry)
}

func isImmutableTagError(err error) bool {
	for _, text := range immutableTagErrors {
		if strings.Contains(err.Error(), text) {
			return true
		}
	}
	return false
}

// oneLine keeps multi-line registry errors on the single line kiln prints.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// permissionCheckFailed is Kaniko's message, kept so existing log searches and
// runbooks still match.
const permissionCheckFailed = "error checking push permissions -- make sure you entered the correct tag name, and that you are authenticated correctly, and try again"

// CheckPushPermissions verifies, before the build, that the credentials can
// push to every repository the build will write, so that a bad password
// fails fast and nothing is pushed. Targets follow Kaniko: the destinations;
// with --no-push, the cache repository unless --no-push-cache or it is an
// "oci:" layout; nothing with --skip-push-permission-check.
func CheckPushPermissions(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	if cfg.Registry == nil {
		return errors.New("publish: Config.Registry is not set")
	}
	checked := map[string]bool{}
	for _, target := range permissionTargets(cfg) {
		if err := ctx.Err(); err != nil {
			return err
		}
		tag, err := cfg.Registry.ParseTag(target, false)
		if err != nil {
			return fmt.Errorf("%s: %q is not an image reference: %v", permissionCheckFailed, target, err)
		}
		repository := tag.Context().String()
		if checked[repository] {
			continue
		}
		// Kaniko retries network flakes during the check too.
		rt := transport.NewRetry(cfg.Registry.Transport(tag.RegistryStr()))
		if err := remote.CheckPushPermission(tag, cfg.Keychain, rt); err != nil {
			return fmt.Errorf("%s: checking push permission for %q: %s (%s)",
				permissionCheckFailed, tag, oneLine(err), permissionFix(err, tag.RegistryStr()))
		}
		checked[repository] = true
	}
	return nil
}

func permissionTargets(cfg Config) []string {
	switch {
	case cfg.SkipPushPermissionCheck:
		return nil
	case !cfg.NoPush:
		return cfg.Destinations
	case cfg.NoPushCache || cfg.CacheRepo == "" || strings.HasPrefix(cfg.CacheRepo, "oci:"):
		return nil
	default:
		return []string{cfg.CacheRepo}
	}
}

// permissionFix points at credentials only when the registry answered and
// refused them; an unreachable registry needs its address checked instead.
func permissionFix(err error, registry string) string {
	var helperErr *compat.HelperError
	if errors.As(err, &helperErr) {
		return "or pass --skip-push-permission-check"
	}
	var terr *transport.Error
	if errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden) {
		return fmt.Sprintf("check the credentials for %s in $DOCKER_CONFIG/config.json, or pass --skip-push-permission-check", registry)
	}
	return fmt.Sprintf("check that %s is reachable from here and the --destination is right; for a plain-HTTP registry pass --insecure or --insecure-registry=%s", registry, registry)
}
