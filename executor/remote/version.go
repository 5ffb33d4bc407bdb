package remote

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/kilnbuild/kiln/executor/helper"
	"github.com/moby/buildkit/client"
	"github.com/sirupsen/logrus"
)

// OldestBuildKit is the oldest BuildKit release kiln supports as a remote
// daemon (--buildkit-host); the e2e suite builds on this minor line's last
// patch release (testenv.OldestBuildkitVersion) and on the go.mod release.
// Older daemons are refused when Connect meets them. Remote builds name
// their pinned base images in FROM lines as well, for releases whose
// frontend ignores the source policy (see executor's pinBasesForRemote).
const OldestBuildKit = "v0.26.0"

// checkVersion asks the daemon its version and refuses, in one line
// naming the version and what is needed, a release kiln does not support. A
// daemon built without a version stamp is taken as current (logged at debug
// level).
func checkVersion(ctx context.Context, c *client.Client, host string, log logrus.FieldLogger) error {
	info, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("BuildKit at %s does not report its version (%s): kiln needs BuildKit %s or newer", host, helper.OneLine(err.Error()), OldestBuildKit)
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
