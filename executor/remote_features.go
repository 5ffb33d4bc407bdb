package executor

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/moby/buildkit/client"
	"github.com/sirupsen/logrus"
)

// OldestBuildKit is the oldest BuildKit release kiln supports as a remote
// daemon (--buildkit-host); the e2e suite builds on this minor line's last
// patch release (testenv.OldestBuildkitVersion) and on the go.mod release.
// Older daemons are refused before the build.
const OldestBuildKit = "v0.26.0"

// Base images a build pins elsewhere than their names say (--registry-mirror,
// --registry-map) are pinned by a source policy, which BuildKit's Dockerfile
// frontend up to at least v0.26 ignores when it looks the image up: it then
// reads busybox from Docker Hub. Every remote build therefore also names
// the pinned images in its FROM lines (pinBasesForRemote), the same build on
// any release; a private daemon is always the go.mod release.

// checkRemoteDaemon asks the daemon its version and refuses, in one line
// naming the version and what is needed, a release kiln does not support. A
// daemon built without a version stamp is taken as current (logged at debug
// level).
func checkRemoteDaemon(ctx context.Context, c *client.Client, host string, log logrus.FieldLogger) error {
	info, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("BuildKit at %s does not report its version (%s): kiln needs BuildKit %s or newer", host, engine.OneLine(err.Error()), OldestBuildKit)
	}
	version := info.BuildkitVersion.Version
	if _, ok := parseRelease(version); !ok {
		log.Debugf("BuildKit at %s reports version %q; assuming a current release", host, version)
		return nil
	}
	log.Debugf("BuildKit at %s is %s %s", host, info.BuildkitVersion.Package, version)
	return daemonRefusal(host, version)
}

// daemonRefusal is why a daemon of this release cannot run the build, or nil.
func daemonRefusal(host, version string) error {
	if olderThan(version, OldestBuildKit) {
		return fmt.Errorf("BuildKit at %s is %s; kiln needs BuildKit %s or newer: upgrade the daemon or leave out --buildkit-host/BUILDKIT_HOST", host, version, OldestBuildKit)
	}
	return nil
}

// pinBasesForRemote rewrites the staged Dockerfile's FROM lines to the
// images kiln pinned when any pin redirects (see above).
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

// parseRelease reads "v0.26.3" (or "0.26.3", with any "-rc1" or "+meta"
// suffix) into its three numbers; ok is false for "0.0.0+unknown" and
// other unstamped builds.
func parseRelease(v string) ([3]int, bool) {
	var r [3]int
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return r, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return r, false
		}
		r[i] = n
	}
	return r, r != [3]int{}
}

// olderThan compares two releases parseRelease reads.
func olderThan(v, than string) bool {
	a, _ := parseRelease(v)
	b, _ := parseRelease(than)
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}
