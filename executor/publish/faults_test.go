package publish

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// ggcrTries is how many times go-containerregistry tries a request (and a
// whole blob upload) within one push: its default backoff's Steps.
const ggcrTries = 3

// ggcrRetries keeps go-containerregistry's default number of tries with
// millisecond pauses, so counts are real and tests fast.
var ggcrRetries = remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 3, Steps: ggcrTries})

// bigLayerImage has one incompressible 256 KiB layer: uploads take several
// writes, so a reset lands mid-blob.
func bigLayerImage(t *testing.T) (v1.Image, string) {
	t.Helper()
	return imageOf(t, 256<<10, 1)
}

// assertTagWholeOrAbsent checks the registry's store after a push: the tag
// is absent, or (when pushed) it is digest and every blob it names is held.
func assertTagWholeOrAbsent(t *testing.T, reg *testenv.Registry, path, digest string, pushed bool) {
	t.Helper()
	img, tagged, err := reg.Manifest(path)
	switch {
	case err != nil:
		t.Errorf("%s points at a partial image: %v", path, err)
	case tagged != pushed:
		t.Errorf("%s tagged: %v, want %v", path, tagged, pushed)
	case tagged:
		if got, _ := img.Digest(); got.String() != digest {
			t.Errorf("%s points at %s, want %s", path, got, digest)
		}
	}
}

// TestPushFaults: a real registry failing the push the ways registries and
// networks do. Whatever happens the tag is absent or points at the whole
// image; kiln makes 1 + --push-retry attempts (each one HEAD of the tag's
// manifest), go-containerregistry three tries of a request inside each, and
// a failed push ends in one line naming the destination.
func TestPushFaults(t *testing.T) {
	const pushRetry = 2
	const always = 1000
	blobPost := testenv.Fault{Count: always, Status: http.StatusInternalServerError, Method: http.MethodPost, Path: `/blobs/uploads/$`}
	blobPatch := testenv.Fault{Count: 2, Status: http.StatusTooManyRequests, Method: http.MethodPatch}
	blobCommit := testenv.Fault{Count: always, Status: http.StatusServiceUnavailable, Method: http.MethodPut, Path: `/blobs/uploads/`}
	manifestPut := testenv.Fault{Count: always, Status: http.StatusInternalServerError, Method: http.MethodPut, Path: `/manifests/`}
	cases := []struct {
		name         string
		fault        testenv.Fault
		pushed       bool
		attempts     int // HEADs of the tag's manifest that reached the registry
		manifestPuts int
		sleeps       int // kiln's pauses between attempts
	}{
		{name: "blob-upload-500", fault: blobPost, attempts: 1 + pushRetry, sleeps: pushRetry},
		{name: "blob-upload-429-twice", fault: blobPatch, pushed: true, attempts: 1, manifestPuts: 1},
		{name: "blob-commit-503", fault: blobCommit, attempts: 1 + pushRetry, sleeps: pushRetry},
		{name: "manifest-put-500", fault: manifestPut, attempts: 1 + pushRetry, manifestPuts: ggcrTries * (1 + pushRetry), sleeps: pushRetry},
		{name: "manifest-put-429-4x", fault: testenv.Fault{Count: 4, Status: http.StatusTooManyRequests, Method: http.MethodPut, Path: `/manifests/`},
			pushed: true, attempts: 2, manifestPuts: 5, sleeps: 1},
		{name: "blob-reset-midway", fault: testenv.Fault{Count: always, Effect: testenv.Reset, Method: http.MethodPatch}, attempts: 1 + pushRetry, sleeps: pushRetry},
		{name: "blob-reset-once", fault: testenv.Fault{Count: 1, Effect: testenv.Reset, Method: http.MethodPatch}, pushed: true, attempts: 1, manifestPuts: 1},
		{name: "dies-mid-blob", fault: testenv.Fault{Count: 1, Effect: testenv.Die, Method: http.MethodPatch}, attempts: 1, sleeps: pushRetry},
		{name: "dies-at-manifest-put", fault: testenv.Fault{Count: 1, Effect: testenv.Die, Method: http.MethodPut, Path: `/manifests/`},
			attempts: 1, manifestPuts: 1, sleeps: pushRetry},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			img, digest := bigLayerImage(t)
			reg := testenv.StartRegistry(t)
			if err := reg.InjectFault(c.fault); err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, nil)
			h.cfg.remoteOptions = []remote.Option{ggcrRetries}
			h.cfg.Destinations = []string{reg.Ref("team/app:v1")}
			h.cfg.PushRetry = pushRetry
			err := h.run(t, img)
			if c.pushed && err != nil {
				t.Fatalf("push failed: %v", err)
			}
			if !c.pushed {
				if err == nil {
					t.Fatal("push passed")
				}
				if want := "failed to push to destination " + reg.Ref("team/app:v1") + ": "; !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q: want one line starting %q", err, want)
				}
				if want := "(3 of 3 attempts made, --push-retry=2)"; !strings.HasSuffix(err.Error(), want) {
					t.Errorf("error %q: want it to end %q", err, want)
				}
			}
			assertTagWholeOrAbsent(t, reg, "team/app:v1", digest, c.pushed)
			if got := reg.Count(http.MethodHead, "/v2/team/app/manifests/v1"); got != c.attempts {
				t.Errorf("push attempts (HEADs of the tag) %d, want %d", got, c.attempts)
			}
			if got := reg.Count(http.MethodPut, "/manifests/"); got != c.manifestPuts {
				t.Errorf("manifest PUTs %d, want %d", got, c.manifestPuts)
			}
			if len(h.sleeps) != c.sleeps {
				t.Errorf("kiln paused %v between attempts, want %d pauses", h.sleeps, c.sleeps)
			}
			t.Logf("error: %v; requests: %d", err, len(reg.Requests()))
		})
	}
}

// TestStalledPushEndsWithTheJobsDeadline: a registry that accepts the
// manifest PUT and never answers holds the push, as it holds Kaniko's, until
// the build's context ends (the executor's SIGTERM, a CI job's deadline);
// then the push stops at once, retries no more, and tags nothing.
func TestStalledPushEndsWithTheJobsDeadline(t *testing.T) {
	img, _ := bigLayerImage(t)
	reg := testenv.StartRegistry(t, testenv.WithFault(testenv.Fault{Count: 1000, Effect: testenv.Stall, Method: http.MethodPut, Path: `/manifests/`}))
	h := newHarness(t, nil)
	h.cfg.remoteOptions = []remote.Option{ggcrRetries}
	h.cfg.Destinations = []string{reg.Ref("team/app:v1")}
	h.cfg.PushRetry = 3
	plan, err := NewPlan(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- plan.Publish(ctx, img) }()
	waitUntil(t, "the manifest PUT to stall", func() bool { return reg.Count(http.MethodPut, "/manifests/") == 1 })
	select {
	case err := <-done:
		t.Fatalf("the push ended while the registry stalled: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	err = <-done
	if err == nil || !strings.Contains(err.Error(), "context canceled") || !strings.HasSuffix(err.Error(), "(1 of 4 attempts made, --push-retry=3)") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q: want one line saying the push was cancelled at its first attempt", err)
	}
	if len(h.sleeps) != 0 || reg.Count(http.MethodPut, "/manifests/") != 1 {
		t.Errorf("retried after the deadline: pauses %v, manifest PUTs %d", h.sleeps, reg.Count(http.MethodPut, "/manifests/"))
	}
	assertTagWholeOrAbsent(t, reg, "team/app:v1", "", false)
}

// waitUntil polls cond for up to a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
	}
}
