package executor

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/buildkit/client"
	"github.com/sirupsen/logrus"
)

// OldestBuildKit is the oldest BuildKit release kiln supports as a remote
// daemon (--buildkit-host); the e2e suite builds with it and with the
// release in go.mod. Older daemons are refused before the build.
const OldestBuildKit = "v0.26.0"

// remoteUse is what a build asks of a remote daemon beyond a plain build.
type remoteUse struct {
	// redirected: a base image is pulled from elsewhere than its name says
	// (--registry-mirror, --registry-map), which the source policy enforces.
	redirected bool
}

// daemonNeed is something a kiln feature needs from the daemon, and the
// first BuildKit release that has it. A daemon without it would build
// something else without a word, so the build is refused instead.
type daemonNeed struct {
	since   string
	what    string // what the daemon must do
	feature string // the kiln setting that needs it
	applies func(remoteUse) bool
}

// daemonNeeds lists every such need in one place. Source policies exist
// since v0.11 but are applied to the base image lookup (the image config
// the Dockerfile frontend reads) only since v0.12; every need older than
// OldestBuildKit is covered by the version floor.
var daemonNeeds = []daemonNeed{
	{
		since:   "v0.12.0",
		what:    "apply source policies to base image lookups",
		feature: "--registry-mirror/--registry-map",
		applies: func(u remoteUse) bool { return u.redirected },
	},
}

// checkRemoteDaemon asks the daemon its version and refuses, in one line
// naming the version and what is missing, a daemon that would silently
// ignore part of the build. A daemon built without a version stamp is
// taken as current (logged at debug level).
func checkRemoteDaemon(ctx context.Context, c *client.Client, host string, use remoteUse, log logrus.FieldLogger) error {
	info, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("BuildKit at %s does not report its version (%s): kiln needs BuildKit %s or newer", host, oneLine(err.Error()), OldestBuildKit)
	}
	version := info.BuildkitVersion.Version
	if _, ok := parseRelease(version); !ok {
		log.Debugf("BuildKit at %s reports version %q; assuming a current release", host, version)
		return nil
	}
	log.Debugf("BuildKit at %s is %s %s", host, info.BuildkitVersion.Package, version)
	return daemonRefusal(host, version, use)
}

// daemonRefusal is why a daemon of this release cannot run the build, or nil.
func daemonRefusal(host, version string, use remoteUse) error {
	if olderThan(version, OldestBuildKit) {
		return fmt.Errorf("BuildKit at %s is %s; kiln needs BuildKit %s or newer: upgrade the daemon or leave out --buildkit-host/BUILDKIT_HOST", host, version, OldestBuildKit)
	}
	for _, need := range daemonNeeds {
		if need.applies(use) && olderThan(version, need.since) {
			return fmt.Errorf("BuildKit at %s is %s; %s needs BuildKit %s or newer to %s", host, version, need.feature, need.since, need.what)
		}
	}
	return nil
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
