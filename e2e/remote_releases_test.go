package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// TestRemoteDaemonReleases: kiln builds on the oldest BuildKit release it
// supports and on the one in go.mod (both built from their modules) with a
// --registry-mirror, and the mirror is obeyed: nothing else could serve
// busybox here, as there is no internet.
func TestRemoteDaemonReleases(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	// go.mod's release: the workspace's patched copy of BuildKit has none.
	list := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/moby/buildkit")
	list.Env = append(os.Environ(), "GOWORK=off")
	current, err := list.Output()
	if err != nil {
		t.Fatalf("reading the BuildKit release in go.mod: %v", err)
	}
	releases := []struct{ name, version, buildkitd string }{
		{"oldest", testenv.OldestBuildkitVersion, testenv.OldestBuildkitd(t)},
		{"current", strings.TrimSpace(string(current)), testenv.Binaries(t).Buildkitd},
	}
	for _, release := range releases {
		t.Run(release.name, func(t *testing.T) {
			t.Parallel()
			reg := mirrorRegistry(t)
			rb := startRemoteBuildkitd(t, reg, release.buildkitd)
			if got := rb.version(t); got != release.version {
				t.Fatalf("the %s daemon reports %q, want %s", release.name, got, release.version)
			}
			marker := "built-on-" + release.version
			ctx := writeContext(t, "FROM busybox\nRUN echo "+marker+" > /marker\n")
			repo := "e2e/remote-release/" + release.name
			m := mode{name: "root"}
			args := append(mirrorArgs(ctx, reg, reg.Ref(repo+":v1")), "--buildkit-host", rb.addr)
			r := m.run(t, m.stateDir(t), args,
				"BUILDKIT_TLSCACERT="+rb.ca.CertFile, "BUILDKIT_TLSCERT="+rb.client.CertFile, "BUILDKIT_TLSKEY="+rb.client.KeyFile)
			r.mustSucceed(t)
			if !rb.ranCommand(t, marker) {
				t.Errorf("the %s daemon has no record of the RUN step", release.name)
			}
			img, _ := pulledImage(t, reg, reg.Ref(repo+":v1"))
			if got := rootFile(t, img, "marker"); got != marker+"\n" {
				t.Errorf("/marker = %q, want %q", got, marker+"\n")
			}
		})
	}
}

// version is the release the daemon reports.
func (rb *remoteBuildkit) version(t *testing.T) string {
	t.Helper()
	c, err := rb.connect(t)
	if err != nil {
		t.Fatalf("connecting to the remote buildkitd: %v", err)
	}
	defer c.Close()
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	return info.BuildkitVersion.Version
}
