package executor

import (
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/kilnbuild/kiln/compat"
)

// pinBasesForRemote rewrites the staged Dockerfile's FROM lines to the
// images kiln pinned when any pin redirects. Base images a build pins
// elsewhere than their names say (--registry-mirror, --registry-map) are
// pinned by a source policy, which BuildKit's Dockerfile frontend up to at
// least v0.26 ignores when it looks the image up: it then reads busybox
// from Docker Hub. Every remote build therefore also names the pinned
// images in its FROM lines, the same build on any release; a private daemon
// is always the go.mod release.
func pinBasesForRemote(staged string, buildArgs []string, pins []PinnedImage) error {
	if !redirects(pins) {
		return nil
	}
	dt, err := os.ReadFile(staged)
	if err != nil {
		return err
	}
	parsed, err := compat.ParseDockerfileBytes(staged, dt, buildArgs)
	if err != nil {
		return err
	}
	pinned := map[string]string{}
	for _, pin := range pins {
		pinned[pin.Image] = pin.Pinned
	}
	rewritten, changed, err := parsed.WithPinnedBases(dt, pinned)
	if err != nil || !changed {
		return err
	}
	return os.WriteFile(staged, rewritten, 0o600)
}

// redirects reports whether a pin takes an image from another registry
// or repository than its name says.
func redirects(pins []PinnedImage) bool {
	for _, pin := range pins {
		from, err1 := name.ParseReference(pin.Image)
		to, err2 := name.ParseReference(pin.Pinned)
		if err1 != nil || err2 != nil || from.Context().Name() != to.Context().Name() {
			return true
		}
	}
	return false
}
