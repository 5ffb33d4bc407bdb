package e2e

import (
	"net/http"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// always is a fault count no build exhausts.
const always = 100000

// assertTagWholeOrAbsent reads the registry's store after a build: the tag
// is absent, or (when pushed) every blob its manifest names is held.
func assertTagWholeOrAbsent(t *testing.T, reg *testenv.Registry, path string, pushed bool) {
	t.Helper()
	_, tagged, err := reg.Manifest(path)
	if err != nil {
		t.Errorf("%s points at a partial image: %v", path, err)
	}
	if tagged != pushed {
		t.Errorf("%s tagged: %v, want %v", path, tagged, pushed)
	}
}

// TestRegistryFaults: the executor against a real registry that fails
// pushes and pulls the ways registries and networks do. A build either
// pushes a whole image or exits 1 with one line and no tag; --push-retry=1
// makes two attempts (each one HEAD of the tag's manifest).
func TestRegistryFaults(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	img := testenv.BusyboxImage(t)
	const repo = "e2e/faults/app"
	blobs := `^/v2/` + repo + `/blobs/uploads/`
	baseBlobs := `^/v2/team/base/blobs/sha256:`
	cases := []struct {
		name     string
		fault    testenv.Fault
		pushed   bool
		attempts int    // HEADs of the tag; -1 when the build fails before pushing
		want     string // in the error line of a failed build
	}{
		{"blob-upload-503", testenv.Fault{Count: always, Status: http.StatusServiceUnavailable, Method: http.MethodPatch, Path: blobs}, false, 2, "(2 of 2 attempts made, --push-retry=1)"},
		{"blob-upload-429-once", testenv.Fault{Count: 1, Status: http.StatusTooManyRequests, Method: http.MethodPatch, Path: blobs}, true, 1, ""},
		{"blob-commit-500", testenv.Fault{Count: always, Status: http.StatusInternalServerError, Method: http.MethodPut, Path: blobs}, false, 2, "failed to push to destination"},
		{"manifest-put-429", testenv.Fault{Count: always, Status: http.StatusTooManyRequests, Method: http.MethodPut, Path: `/manifests/`}, false, 2, "failed to push to destination"},
		{"manifest-put-502-3x", testenv.Fault{Count: 3, Status: http.StatusBadGateway, Method: http.MethodPut, Path: `/manifests/`}, true, 2, ""},
		{"blob-reset-midway", testenv.Fault{Count: always, Effect: testenv.Reset, Method: http.MethodPatch, Path: blobs}, false, 2, "connection reset by peer"},
		{"blob-reset-once", testenv.Fault{Count: 1, Effect: testenv.Reset, Method: http.MethodPatch, Path: blobs}, true, 1, ""},
		{"dies-mid-blob", testenv.Fault{Count: 1, Effect: testenv.Die, Method: http.MethodPatch, Path: blobs}, false, 1, "connection refused"},
		{"dies-at-manifest-put", testenv.Fault{Count: 1, Effect: testenv.Die, Method: http.MethodPut, Path: `/manifests/`}, false, 1, "connection refused"},
		{"pull-blob-500-once", testenv.Fault{Count: 1, Status: http.StatusInternalServerError, Method: http.MethodGet, Path: baseBlobs}, true, 1, ""},
		{"pull-blob-503", testenv.Fault{Count: always, Status: http.StatusServiceUnavailable, Method: http.MethodGet, Path: baseBlobs}, false, -1, "team/base"},
		{"pull-blob-reset-once", testenv.Fault{Count: 1, Effect: testenv.Reset, Method: http.MethodGet, Path: baseBlobs}, true, 1, ""},
		{"pull-blob-reset", testenv.Fault{Count: always, Effect: testenv.Reset, Method: http.MethodGet, Path: baseBlobs}, false, -1, "team/base"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			reg, base := faultyRegistry(t, img, c.fault)
			m := mode{name: "root"}
			args := []string{"--context", baseDockerfile(t, base, c.name), "--destination", reg.Ref(repo + ":v1"),
				"--insecure-registry", reg.Host, "--push-retry", "1"}
			r := m.run(t, m.stateDir(t), args)
			if c.pushed {
				r.mustSucceed(t)
			} else {
				r.assertOneLineFailure(t, c.want)
			}
			assertTagWholeOrAbsent(t, reg, repo+":v1", c.pushed)
			if c.attempts >= 0 {
				if got := reg.Count(http.MethodHead, "/v2/"+repo+"/manifests/v1"); got != c.attempts {
					t.Errorf("push attempts (HEADs of the tag) %d, want %d", got, c.attempts)
				}
			} else if got := reg.Count(http.MethodPut, "/v2/"+repo+"/"); got != 0 {
				t.Errorf("a build whose pull failed pushed: %d PUTs", got)
			}
			if c.pushed {
				assertMarker(t, reg, reg.Ref(repo+":v1"), c.name)
			}
		})
	}
}

// TestStalledRegistryEndsWithTheJobsDeadline: a registry that stops
// answering mid-pull or mid-push holds the build, as it holds Kaniko's,
// until the CI job's deadline sends SIGTERM; the executor then stops with
// one line, tags nothing and leaves nothing.
func TestStalledRegistryEndsWithTheJobsDeadline(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	img := testenv.BusyboxImage(t)
	const repo = "e2e/stall/app"
	cases := []struct {
		name  string
		fault testenv.Fault
	}{
		{"manifest-put", testenv.Fault{Count: always, Effect: testenv.Stall, Method: http.MethodPut, Path: `/manifests/`}},
		{"blob-upload", testenv.Fault{Count: always, Effect: testenv.Stall, Method: http.MethodPatch}},
		{"base-blob-pull", testenv.Fault{Count: always, Effect: testenv.Stall, Method: http.MethodGet, Path: `^/v2/team/base/blobs/sha256:`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			reg, base := faultyRegistry(t, img, c.fault)
			m := mode{name: "root"}
			e := m.start(t, m.stateDir(t), []string{"--context", baseDockerfile(t, base, c.name),
				"--destination", reg.Ref(repo + ":v1"), "--insecure-registry", reg.Host, "--push-retry", "3"})
			waitFor(t, e, buildTimeout, "a request to stall", func() bool {
				for _, r := range reg.Requests() {
					if r.Injected {
						return true
					}
				}
				return false
			})
			if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			r := e.wait(t)
			assertStoppedBySIGTERM(t, r)
			assertTagWholeOrAbsent(t, reg, repo+":v1", false)
		})
	}
}

// faultyRegistry starts a registry holding img as team/base:1 (returned as
// base), then injects fault: seeding is not subject to it.
func faultyRegistry(t *testing.T, img v1.Image, fault testenv.Fault) (reg *testenv.Registry, base string) {
	t.Helper()
	reg = testenv.StartRegistry(t)
	base = testenv.PushBase(t, reg, "team/base:1", img)
	if err := reg.InjectFault(fault); err != nil {
		t.Fatal(err)
	}
	return reg, base
}
