package publish

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/flagmap"
	"github.com/kilnbuild/kiln/internal/testenv"
)

// harness is one publishing run's surroundings: logs, sleeps, a config.
type harness struct {
	cfg    Config
	logs   *logtest.Hook
	mu     sync.Mutex
	sleeps []time.Duration
}

func newHarness(t *testing.T, registryFlags *flagmap.Options) *harness {
	t.Helper()
	if registryFlags == nil {
		registryFlags = &flagmap.Options{}
	}
	settings, err := compat.NewRegistrySettings(registryFlags, "v0.0.0-test")
	if err != nil {
		t.Fatal(err)
	}
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	h := &harness{logs: hook}
	h.cfg = Config{
		Registry: settings,
		Keychain: compat.Keychain(t.TempDir()),
		Log:      logger,
		Sleep: func(_ context.Context, d time.Duration) error {
			h.mu.Lock()
			h.sleeps = append(h.sleeps, d)
			h.mu.Unlock()
			return nil
		},
		// One attempt per push inside go-containerregistry, so only
		// --push-retry retries and tests stay fast.
		remoteOptions: []remote.Option{remote.WithRetryBackoff(remote.Backoff{Steps: 1})},
	}
	return h
}

func (h *harness) run(t *testing.T, img v1.Image) error {
	t.Helper()
	plan, err := NewPlan(h.cfg)
	if err != nil {
		t.Fatalf("NewPlan: %v", err)
	}
	return plan.Publish(context.Background(), img)
}

func (h *harness) logged(text string) bool {
	for _, entry := range h.logs.AllEntries() {
		if strings.Contains(entry.Message, text) {
			return true
		}
	}
	return false
}

func (h *harness) allLogs() string {
	var lines []string
	for _, entry := range h.logs.AllEntries() {
		lines = append(lines, entry.Message)
	}
	return strings.Join(lines, "\n")
}

// withCredentials writes a config.json with user:password for host and uses it.
func (h *harness) withCredentials(t *testing.T, host, user, password string) {
	t.Helper()
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	config := `{"auths":{"` + host + `":{"auth":"` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	h.cfg.Keychain = compat.Keychain(dir)
}

func testImage(t *testing.T) (v1.Image, string) {
	t.Helper()
	return imageOf(t, 512, 2)
}

// imageOf is a random image of layers layers of size bytes each, and its digest.
func imageOf(t *testing.T, size int64, layers int64) (v1.Image, string) {
	t.Helper()
	img, err := random.Image(size, layers)
	if err != nil {
		t.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return img, digest.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// remoteDigest reads the digest a tag resolves to, as a well-configured client.
func remoteDigest(t *testing.T, reg *testenv.Registry, ref string) string {
	t.Helper()
	tag, err := name.NewTag(ref, name.WeakValidation)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(tag, reg.RemoteOptions()...)
	if err != nil {
		t.Fatalf("HEAD %s: %v", ref, err)
	}
	return desc.Digest.String()
}

func TestPushesEveryDestinationAndWritesOutputs(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.WithBasicAuth("ci", "s3cret"))
	img, digest := testImage(t)
	out := t.TempDir()

	h := newHarness(t, nil)
	h.withCredentials(t, reg.Host, "ci", "s3cret")
	h.cfg.Destinations = []string{reg.Ref("team/app:v1"), reg.Ref("team/app"), reg.Ref("other/app:v2")}
	h.cfg.DigestFile = filepath.Join(out, "new", "dir", "digest")
	h.cfg.ImageNameDigestFile = filepath.Join(out, "name-digest")
	h.cfg.BuilderOutput = out
	if err := CheckPushPermissions(context.Background(), h.cfg); err != nil {
		t.Fatalf("permission check with the right password: %v", err)
	}
	if err := h.run(t, img); err != nil {
		t.Fatalf("publish: %v", err)
	}

	for _, ref := range []string{reg.Ref("team/app:v1"), reg.Ref("team/app:latest"), reg.Ref("other/app:v2")} {
		if got := remoteDigest(t, reg, ref); got != digest {
			t.Errorf("%s resolves to %s, want %s", ref, got, digest)
		}
	}
	if got := readFile(t, h.cfg.DigestFile); got != digest {
		t.Errorf("digest file = %q, want %q", got, digest)
	}
	if info, err := os.Stat(filepath.Dir(h.cfg.DigestFile)); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("digest file's new parent directory: %v, %v; want mode 0700", info, err)
	}
	if info, err := os.Stat(h.cfg.DigestFile); err != nil || info.Mode().Perm() != 0o644 {
		t.Errorf("digest file: %v, %v; want mode 0644", info, err)
	}
	wantNames := reg.Host + "/team/app@" + digest + "\n" + reg.Host + "/team/app@" + digest + "\n" + reg.Host + "/other/app@" + digest + "\n"
	if got := readFile(t, h.cfg.ImageNameDigestFile); got != wantNames {
		t.Errorf("--image-name-with-digest-file:\n got %q\nwant %q", got, wantNames)
	}
	wantOutput := `{"name":"` + reg.Ref("team/app:v1") + `","digest":"` + digest + `"}` + "\n" +
		`{"name":"` + reg.Ref("team/app") + `","digest":"` + digest + `"}` + "\n" +
		`{"name":"` + reg.Ref("other/app:v2") + `","digest":"` + digest + `"}` + "\n"
	if got := readFile(t, filepath.Join(out, "images")); got != wantOutput {
		t.Errorf("BUILDER_OUTPUT images:\n got %q\nwant %q", got, wantOutput)
	}
	if !h.logged("Pushed " + reg.Host + "/other/app@" + digest) {
		t.Errorf("no Pushed line in logs:\n%s", h.allLogs())
	}
}

func TestBothNameFilesGetTheTagFormLikeKaniko(t *testing.T) {
	img, digest := testImage(t)
	out := t.TempDir()
	h := newHarness(t, nil)
	h.cfg.NoPush = true
	h.cfg.Destinations = []string{"gcr.io/foo/bar:123", "bob/image"}
	h.cfg.ImageNameDigestFile = filepath.Join(out, "name")
	h.cfg.ImageNameTagDigestFile = filepath.Join(out, "name-tag")
	if err := h.run(t, img); err != nil {
		t.Fatal(err)
	}
	want := "gcr.io/foo/bar:123@" + digest + "\nindex.docker.io/bob/image:latest@" + digest + "\n"
	for _, path := range []string{h.cfg.ImageNameDigestFile, h.cfg.ImageNameTagDigestFile} {
		if got := readFile(t, path); got != want {
			t.Errorf("%s:\n got %q\nwant %q", filepath.Base(path), got, want)
		}
	}
}

func TestNoPushWritesLocalOutputsOnly(t *testing.T) {
	img, digest := testImage(t)
	out := t.TempDir()
	layoutDir := filepath.Join(out, "layout")
	// An existing layout's index is replaced, as Kaniko does.
	previous, err := random.Index(64, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := layout.Write(layoutDir, previous); err != nil {
		t.Fatal(err)
	}

	h := newHarness(t, nil)
	h.cfg.NoPush = true
	h.cfg.TarPath = filepath.Join(out, "image.tar")
	h.cfg.OCILayoutPath = layoutDir
	h.cfg.DigestFile = filepath.Join(out, "digest")
	h.cfg.BuilderOutput = out
	if err := h.run(t, img); err != nil {
		t.Fatal(err)
	}

	if got := readFile(t, h.cfg.DigestFile); got != digest {
		t.Errorf("digest file = %q, want %q", got, digest)
	}
	if got := tarballRepoTags(t, h.cfg.TarPath); !slices.Equal(got, []string{"docker.io/unset-repo/unset-image-name:latest"}) {
		t.Errorf("RepoTags without --destination = %v", got)
	}
	index, err := layout.ImageIndexFromPath(layoutDir)
	if err != nil {
		t.Fatalf("OCI layout unreadable: %v", err)
	}
	manifest, err := index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(manifest.Manifests) != 1 || manifest.Manifests[0].Digest.String() != digest || manifest.Manifests[0].Annotations != nil {
		t.Errorf("OCI index = %+v, want exactly one descriptor for %s without annotations", manifest.Manifests, digest)
	}
	if _, err := os.Stat(filepath.Join(out, "images")); !os.IsNotExist(err) {
		t.Errorf("BUILDER_OUTPUT written under --no-push (stat: %v)", err)
	}
	if !h.logged("Skipping push to container registry due to --no-push flag") {
		t.Errorf("missing the --no-push log line:\n%s", h.allLogs())
	}
}

// tarballRepoTags reads manifest.json's RepoTags and checks each tag loads.
func tarballRepoTags(t *testing.T, path string) []string {
	t.Helper()
	manifest, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil {
		t.Fatalf("tarball manifest: %v", err)
	}
	if len(manifest) != 1 {
		t.Fatalf("tarball holds %d images, want 1", len(manifest))
	}
	tags := slices.Clone(manifest[0].RepoTags)
	slices.Sort(tags)
	for _, ref := range tags {
		tag, err := name.NewTag(ref)
		if err != nil {
			t.Fatalf("RepoTag %q: %v", ref, err)
		}
		if _, err := tarball.ImageFromPath(path, &tag); err != nil {
			t.Errorf("tarball.ImageFromPath(%s): %v", ref, err)
		}
	}
	return tags
}

func TestTarballCarriesEveryDestinationAndDockerLoadsIt(t *testing.T) {
	img, digest := testImage(t)
	repo := "registry.example.com/kiln-publish-test/app" + strings.ToLower(strings.ReplaceAll(digest[7:19], "-", ""))
	h := newHarness(t, nil)
	h.cfg.NoPush = true
	h.cfg.Destinations = []string{repo + ":v1", repo}
	h.cfg.TarPath = filepath.Join(t.TempDir(), "image.tar")
	if err := h.run(t, img); err != nil {
		t.Fatal(err)
	}
	want := []string{repo + ":latest", repo + ":v1"}
	if got := tarballRepoTags(t, h.cfg.TarPath); !slices.Equal(got, want) {
		t.Fatalf("RepoTags = %v, want %v", got, want)
	}

	if _, err := exec.LookPath("docker"); err != nil {
		t.Log("docker is not on PATH: docker load not exercised")
		return
	}
	if err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").Run(); err != nil {
		t.Log("the docker engine does not answer: docker load not exercised")
		return
	}
	if b, err := exec.Command("docker", "load", "-i", h.cfg.TarPath).CombinedOutput(); err != nil {
		t.Fatalf("docker load: %v\n%s", err, b)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", want[0], want[1]).Run() })
	for _, ref := range want {
		if b, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", ref).CombinedOutput(); err != nil {
			t.Errorf("docker image inspect %s after docker load: %v\n%s", ref, err, b)
		}
	}
}

func TestPermissionCheckStopsEverythingOnWrongPassword(t *testing.T) {
	open := testenv.StartRegistry(t)
	locked := testenv.StartRegistry(t, testenv.WithBasicAuth("ci", "right-password"))
	h := newHarness(t, nil)
	h.withCredentials(t, locked.Host, "ci", "wrong-password")
	h.cfg.Destinations = []string{open.Ref("team/app:v1"), locked.Ref("team/app:v1")}

	err := CheckPushPermissions(context.Background(), h.cfg)
	if err == nil {
		t.Fatal("permission check passed with a wrong password")
	}
	msg := err.Error()
	for _, want := range []string{
		"error checking push permissions -- make sure you entered the correct tag name, and that you are authenticated correctly, and try again: ",
		locked.Ref("team/app:v1"), "--skip-push-permission-check",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") || strings.Contains(msg, "wrong-password") {
		t.Errorf("error must be one line without the password: %q", msg)
	}
	for _, reg := range []*testenv.Registry{open, locked} {
		if repos := reg.Repositories(); len(repos) != 0 {
			t.Errorf("registry %s holds %v after a failed check", reg.Host, repos)
		}
		for _, req := range reg.Writes() {
			if req.Method == http.MethodPut || req.Method == http.MethodPatch {
				t.Errorf("registry %s received %s %s", reg.Host, req.Method, req.Path)
			}
		}
	}
}

func TestPermissionCheckOncePerRepository(t *testing.T) {
	reg := testenv.StartRegistry(t)
	h := newHarness(t, nil)
	h.cfg.Destinations = []string{reg.Ref("team/app:v1"), reg.Ref("team/app:v2"), reg.Ref("team/app")}
	if err := CheckPushPermissions(context.Background(), h.cfg); err != nil {
		t.Fatal(err)
	}
	var uploads int
	for _, req := range reg.Requests() {
		if req.Method == http.MethodPost {
			uploads++
		}
	}
	if uploads != 1 {
		t.Fatalf("%d upload probes for one repository, want 1: %+v", uploads, reg.Requests())
	}
}

func TestPermissionTargetsFollowKaniko(t *testing.T) {
	dests := []string{"reg.example.com/a", "reg.example.com/b"}
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"push", Config{Destinations: dests, CacheRepo: "reg.example.com/cache"}, dests},
		{"skip flag", Config{Destinations: dests, SkipPushPermissionCheck: true}, nil},
		{"no-push with cache repo", Config{Destinations: dests, NoPush: true, CacheRepo: "reg.example.com/cache"}, []string{"reg.example.com/cache"}},
		{"no-push and no-push-cache", Config{NoPush: true, NoPushCache: true, CacheRepo: "reg.example.com/cache"}, nil},
		{"no-push with an OCI cache", Config{NoPush: true, CacheRepo: "oci:/cache"}, nil},
		{"no-push without cache", Config{Destinations: dests, NoPush: true}, nil},
	} {
		if got := permissionTargets(tc.cfg); !slices.Equal(got, tc.want) {
			t.Errorf("%s: targets %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPushRetryBacksOffThenSucceeds(t *testing.T) {
	img, digest := testImage(t)
	reg := testenv.StartRegistry(t, testenv.WithFault(testenv.Fault{Count: 2, Status: http.StatusInternalServerError}))
	h := newHarness(t, nil)
	h.cfg.Destinations = []string{reg.Ref("team/app:v1")}
	h.cfg.PushRetry = 3
	if err := h.run(t, img); err != nil {
		t.Fatalf("push with --push-retry=3 after 2 failures: %v", err)
	}
	if got := remoteDigest(t, reg, reg.Ref("team/app:v1")); got != digest {
		t.Errorf("pushed digest %s, want %s", got, digest)
	}
	if want := []time.Duration{time.Second, 2 * time.Second}; !slices.Equal(h.sleeps, want) {
		t.Errorf("backoff %v, want %v", h.sleeps, want)
	}
}

func TestPushWithoutRetryFailsInOneLine(t *testing.T) {
	img, _ := testImage(t)
	reg := testenv.StartRegistry(t, testenv.WithFault(testenv.Fault{Count: 2, Status: http.StatusInternalServerError}))
	h := newHarness(t, nil)
	h.cfg.Destinations = []string{reg.Ref("team/app:v1"), reg.Ref("team/other:v1")}
	h.cfg.PushRetry = 1
	err := h.run(t, img)
	if err == nil {
		t.Fatal("push passed although every attempt failed")
	}
	if !strings.HasPrefix(err.Error(), "failed to push to destination "+reg.Ref("team/app:v1")+": ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error = %q, want one line naming the destination", err)
	}
	if !slices.Equal(h.sleeps, []time.Duration{time.Second}) {
		t.Errorf("backoff %v, want [1s]", h.sleeps)
	}
	if tags := reg.Tags("team/other"); tags != nil {
		t.Errorf("pushed to the next destination after a failure: %v", tags)
	}
}

// immutableRegistry rejects every manifest PUT with ECR's immutability error.
func immutableRegistry(t *testing.T) string {
	t.Helper()
	store, err := testenv.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	proxy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{
				"code":    "TAG_INVALID",
				"message": "The image tag 'v1' already exists in the 'app' repository and cannot be overwritten because the repository is immutable.",
			}}})
			return
		}
		r.URL.Scheme, r.URL.Host, r.RequestURI = "http", store.Host, ""
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestImmutableTagErrors(t *testing.T) {
	img, digest := testImage(t)
	host := immutableRegistry(t)
	dest := host + "/team/app:v1"

	h := newHarness(t, nil)
	h.cfg.Destinations = []string{dest}
	err := h.run(t, img)
	if err == nil || !strings.Contains(err.Error(), "cannot be overwritten because the repository is immutable") {
		t.Fatalf("without the flag: error %v, want the registry's immutability error", err)
	}

	h = newHarness(t, nil)
	h.cfg.Destinations = []string{dest}
	h.cfg.PushIgnoreImmutableTagErrors = true
	h.cfg.BuilderOutput = t.TempDir()
	if err := h.run(t, img); err != nil {
		t.Fatalf("with --push-ignore-immutable-tag-errors: %v", err)
	}
	if !h.logged("Immutable tag error ignored for " + host + "/team/app@" + digest) {
		t.Errorf("missing the ignore log line:\n%s", h.allLogs())
	}
	if _, err := os.Stat(filepath.Join(h.cfg.BuilderOutput, "images")); err != nil {
		t.Errorf("BUILDER_OUTPUT not written after an ignored immutable tag: %v", err)
	}
}

func TestHTTPSOutputsArePutWithoutLeakingTheURLQuery(t *testing.T) {
	img, digest := testImage(t)
	var mu sync.Mutex
	var bodies, types []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies, types = append(bodies, r.Method+" "+r.URL.Path+" "+string(b)), append(types, r.Header.Get("Content-Type"))
		mu.Unlock()
		w.WriteHeader(http.StatusForbidden)
	}))
	t.Cleanup(srv.Close)

	h := newHarness(t, nil)
	h.cfg.HTTPClient = srv.Client()
	h.cfg.NoPush = true
	h.cfg.DigestFile = srv.URL + "/bucket/digest?X-Amz-Signature=topsecret"
	if err := h.run(t, img); err != nil {
		t.Fatalf("Kaniko ignores the upload's status; got %v", err)
	}
	if !slices.Equal(bodies, []string{"PUT /bucket/digest " + digest}) || !slices.Equal(types, []string{"text/plain"}) {
		t.Errorf("uploads %q with types %q", bodies, types)
	}
	if !h.logged("403") || strings.Contains(h.allLogs(), "topsecret") {
		t.Errorf("want a warning with the status and without the signature:\n%s", h.allLogs())
	}

	srv.Close()
	err := h.run(t, img)
	if err == nil || !strings.Contains(err.Error(), "--digest-file") || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("unreachable upload: error %v, want one naming --digest-file without the signature", err)
	}
}

func TestNewPlanRejectsBadInputInOneLine(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Destinations = []string{"reg.example.com/a,reg.example.com/b"}
	_, err := NewPlan(h.cfg)
	if err == nil || !strings.Contains(err.Error(), `--destination "reg.example.com/a,reg.example.com/b"`) || strings.Contains(err.Error(), "\n") {
		t.Errorf("comma-joined destinations: %v", err)
	}
	h.cfg.Destinations = nil
	if _, err := NewPlan(h.cfg); err == nil || err.Error() != "you must provide --destination, or use --no-push" {
		t.Errorf("no destination: %v", err)
	}
}

func TestFromOptionsCopiesEveryOutputFlag(t *testing.T) {
	opts := &flagmap.Options{
		Destinations: []string{"reg.example.com/app:v1"}, NoPush: true, TarPath: "t.tar", OCILayoutPath: "layout",
		DigestFile: "d", ImageNameDigestFile: "n", ImageNameTagDigestFile: "nt", PushRetry: 4,
		PushIgnoreImmutableTagError: true, SkipPushPermissionCheck: true, CacheRepo: "reg.example.com/cache",
		NoPushCache: true, Env: flagmap.Environment{BuilderOutput: "out"},
	}
	want := Config{
		Destinations: []string{"reg.example.com/app:v1"}, NoPush: true, TarPath: "t.tar", OCILayoutPath: "layout",
		DigestFile: "d", ImageNameDigestFile: "n", ImageNameTagDigestFile: "nt", PushRetry: 4,
		PushIgnoreImmutableTagErrors: true, SkipPushPermissionCheck: true, CacheRepo: "reg.example.com/cache",
		NoPushCache: true, BuilderOutput: "out",
	}
	if got := FromOptions(opts); !reflect.DeepEqual(got, want) {
		t.Fatalf("FromOptions = %+v\nwant %+v", got, want)
	}
}
