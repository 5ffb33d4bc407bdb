package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// TestRegistryMirrorsAndMaps: Kaniko's --registry-mirror and --registry-map
// order, fallback and --skip-default-registry-fallback, seen from the
// registries' request logs.
func TestRegistryMirrorsAndMaps(t *testing.T) {
	t.Parallel()
	img := testenv.BusyboxImage(t)
	original := testenv.StartRegistry(t)
	empty := testenv.StartRegistry(t) // a mirror that has nothing
	full := testenv.StartRegistry(t)  // a mirror that has everything
	dest := testenv.StartRegistry(t)
	base := testenv.PushBase(t, original, "team/base:1", img)
	prefixed := testenv.PushBase(t, original, "team/prefixed:1", img)
	testenv.PushBase(t, full, "cache/team/prefixed:1", img)
	testenv.SeedMirror(t, full)
	insecure := []string{"--insecure-registry", original.Host, "--insecure-registry", empty.Host, "--insecure-registry", full.Host, "--insecure-registry", dest.Host}

	forEachMode(t, func(t *testing.T, m mode) {
		run := func(t *testing.T, name, from string, flags ...string) result {
			t.Helper()
			args := append([]string{"--context", baseDockerfile(t, from, name), "--destination", dest.Ref("e2e/mirrors/" + m.name + "/" + name + ":v1")}, insecure...)
			return m.run(t, m.stateDir(t), append(args, flags...))
		}

		t.Run("mirror-lacks-then-mirror-has", func(t *testing.T) {
			r := run(t, "mirrors", "busybox", "--registry-mirror", empty.Host, "--registry-mirror", full.Host)
			r.mustSucceed(t)
			assertMarker(t, dest, dest.Ref("e2e/mirrors/"+m.name+"/mirrors:v1"), "mirrors")
			if !served(empty, http.MethodGet, "/v2/library/busybox/manifests/latest", http.StatusNotFound) {
				t.Errorf("the first mirror was not asked for library/busybox")
			}
			if !served(full, http.MethodGet, "/v2/library/busybox/blobs/", http.StatusOK) {
				t.Errorf("busybox's blobs did not come from the mirror that has them")
			}
			if !strings.Contains(r.stderr, "Failed to retrieve image busybox from remapped registry "+empty.Host) {
				t.Errorf("no warning about the mirror that lacks the image")
			}
		})

		t.Run("map-falls-back-to-original", func(t *testing.T) {
			run(t, "fallback", base, "--registry-map", original.Host+"="+empty.Host).mustSucceed(t)
			assertMarker(t, dest, dest.Ref("e2e/mirrors/"+m.name+"/fallback:v1"), "fallback")
			if !served(empty, http.MethodGet, "/v2/team/base/manifests/1", http.StatusNotFound) {
				t.Errorf("the mapped registry was not tried first")
			}
			if !served(original, http.MethodGet, "/v2/team/base/blobs/", http.StatusOK) {
				t.Errorf("the base image did not come from the original registry")
			}
		})

		t.Run("map-with-prefix", func(t *testing.T) {
			r := run(t, "prefix", prefixed, "--registry-map", original.Host+"="+full.Host+"/cache")
			r.mustSucceed(t)
			assertMarker(t, dest, dest.Ref("e2e/mirrors/"+m.name+"/prefix:v1"), "prefix")
			if !served(full, http.MethodGet, "/v2/cache/team/prefixed/blobs/", http.StatusOK) {
				t.Errorf("the base image did not come from %s/cache", full.Host)
			}
			for _, req := range original.Requests() {
				if strings.HasPrefix(req.Path, "/v2/team/prefixed/") {
					t.Errorf("the original registry was asked for %s although the mapping has the image", req.Path)
				}
			}
		})

		t.Run("skip-default-registry-fallback", func(t *testing.T) {
			r := run(t, "skip-fallback", base, "--registry-map", original.Host+"="+empty.Host, "--skip-default-registry-fallback")
			r.assertOneLineFailure(t, "error building image: image not found on any configured mapped registries for "+base)
			assertNothingPushed(t, dest, "e2e/mirrors/"+m.name+"/skip-fallback")
			if slices.ContainsFunc(r.seen, func(p process) bool { return p.name == "buildkitd" }) {
				t.Errorf("a build whose base image is missing started buildkitd")
			}
		})
	})
}

// TestRegistryRetries: a registry failing the first requests makes the
// build fail cleanly, unless --image-download-retry (pull) or --push-retry
// (push) outlast the failures. go-containerregistry already makes three
// tries per request, so three failures beat it.
func TestRegistryRetries(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	img := testenv.BusyboxImage(t)
	cases := []struct {
		name   string
		fault  testenv.Fault
		flags  []string
		failed string // in the error line; "" means the build passes
	}{
		{"pull-429", testenv.Fault{Count: 3, Status: http.StatusTooManyRequests, Method: http.MethodGet, Path: "^/v2/team/base/manifests/"}, nil, "team/base:1"},
		{"pull-429-retried", testenv.Fault{Count: 3, Status: http.StatusTooManyRequests, Method: http.MethodGet, Path: "^/v2/team/base/manifests/"}, []string{"--image-download-retry", "1"}, ""},
		{"push-503", testenv.Fault{Count: 3, Status: http.StatusServiceUnavailable, Method: http.MethodPut, Path: "^/v2/e2e/retry/.*/manifests/"}, nil, "failed to push to destination"},
		{"push-503-retried", testenv.Fault{Count: 3, Status: http.StatusServiceUnavailable, Method: http.MethodPut, Path: "^/v2/e2e/retry/.*/manifests/"}, []string{"--push-retry", "1"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			reg, base := faultyRegistry(t, img, c.fault)
			m, repo := mode{name: "root"}, "e2e/retry/"+c.name
			args := []string{"--context", baseDockerfile(t, base, c.name), "--destination", reg.Ref(repo + ":v1"), "--insecure-registry", reg.Host}
			r := m.run(t, m.stateDir(t), append(args, c.flags...))
			injected := 0
			for _, req := range reg.Requests() {
				if req.Injected {
					injected++
				}
			}
			if injected != c.fault.Count {
				t.Errorf("the registry injected %d faults, want all %d used", injected, c.fault.Count)
			}
			if c.failed != "" {
				r.assertOneLineFailure(t, c.failed)
				// The refused manifest PUTs are logged; none may have landed.
				if served(reg, http.MethodPut, "/v2/"+repo+"/manifests/", http.StatusCreated) || reg.Tags(repo) != nil {
					t.Errorf("a failed build left an image in %s (tags %v)", repo, reg.Tags(repo))
				}
				return
			}
			r.mustSucceed(t)
			assertMarker(t, reg, reg.Ref(repo+":v1"), c.name)
			if r.elapsed > 2*time.Minute {
				t.Errorf("the retried build took %s", r.elapsed)
			}
		})
	}
}

// TestRegistryPasswordStaysOut: credentials for a basic-auth registry
// (mirror and destination) reach neither the output nor the image.
func TestRegistryPasswordStaysOut(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t, testenv.WithBasicAuth(registryUser, registryPassword))
	dockerConfig := testenv.DockerConfig(t, map[string]string{reg.Host: registryUser + ":" + registryPassword})
	ctx := writeContext(t, "FROM busybox\nRUN env > /env.txt && cat /env.txt\nCOPY . /ctx/\n")

	forEachMode(t, func(t *testing.T, m mode) {
		dest := reg.Ref("e2e/secrets/" + m.name + ":v1")
		r := m.run(t, m.stateDir(t), mirrorArgs(ctx, reg, dest), "DOCKER_CONFIG="+dockerConfig)
		r.mustSucceed(t)
		if strings.Contains(r.stdout+r.stderr, registryPassword) {
			t.Errorf("the executor's output reveals the registry password")
		}
		assertSecretAbsent(t, reg, dest, registryPassword)
	})
}
