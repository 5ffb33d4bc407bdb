package executor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/flagmap"
	"github.com/kilnbuild/kiln/internal/testenv"
	cacheimporttypes "github.com/moby/buildkit/cache/remotecache/v1/types"
	"github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
)

// The Dockerfile the cache tests build: RUN output differs from the command
// text ($((1+1)) expands), so output in the log proves the step ran.
const cachedDockerfile = "FROM %s\n" +
	"RUN echo first-run-$((1+1)) && date +%%s%%N > /one\n" +
	"COPY a.txt /a.txt\n" +
	"RUN echo second-run-$((1+1)) && cat /a.txt > /two && date +%%s%%N >> /two\n"

const (
	firstRun     = "RUN echo first-run-$((1+1)) && date +%s%N > /one"
	copyStep     = "COPY a.txt /a.txt"
	secondRun    = "RUN echo second-run-$((1+1)) && cat /a.txt > /two && date +%s%N >> /two"
	firstOutput  = "first-run-2\n"
	secondOutput = "second-run-2\n"
	cachedPrefix = "Using caching version of cmd: "
)

// cacheFixture is a registry holding busybox and a build context.
type cacheFixture struct {
	reg     *testenv.Registry
	base    string
	context string
}

func newCacheFixture(t *testing.T, env testenv.ModeEnv) *cacheFixture {
	t.Helper()
	// The executor finds buildkitd and rootlesskit on PATH.
	t.Setenv("PATH", env.BinDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	reg := testenv.StartRegistry(t)
	base := testenv.PushBase(t, reg, "library/busybox:latest", testenv.BusyboxImage(t))
	dir := writeContext(t, map[string]string{
		"Dockerfile": fmt.Sprintf(cachedDockerfile, base),
		"a.txt":      "v1\n",
	})
	return &cacheFixture{reg: reg, base: base, context: dir}
}

// args are the flags of a build of the fixture's context.
func (f *cacheFixture) args(extra ...string) []string {
	return append([]string{"--context=" + f.context, "--insecure-registry=" + f.reg.Host}, extra...)
}

// runExecutor runs one executor invocation in a fresh environment: its own
// kaniko dir, so a new daemon with new state, as a new process would.
func runExecutor(t *testing.T, args []string) (string, error) {
	t.Helper()
	return runExecutorIn(t, args, t.TempDir())
}

// runExecutorIn is runExecutor with a given kaniko dir.
func runExecutorIn(t *testing.T, args []string, kanikoDir string) (string, error) {
	t.Helper()
	var logs testenv.SyncBuffer
	restore := captureLogs(&logs)
	defer restore()
	err := executeIn(t, &logs, args, kanikoDir)
	return logs.String(), err
}

func executeInto(t *testing.T, logs *testenv.SyncBuffer, args []string) error {
	return executeIn(t, logs, args, t.TempDir())
}

// executeIn runs the executor with kanikoDir as its kaniko dir; the daemon
// state inside it is still new and gone after the build.
func executeIn(t *testing.T, logs *testenv.SyncBuffer, args []string, kanikoDir string) error {
	inv, err := flagmap.Parse(append(args, "--kaniko-dir="+kanikoDir), nil)
	if err != nil {
		t.Fatalf("parsing %v: %v", args, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := &Builder{Version: "test", Stdout: logs, Stderr: logs}
	return b.Build(ctx, inv)
}

// captureLogs sends the standard logger (the executor's) to w.
func captureLogs(w *testenv.SyncBuffer) (restore func()) {
	l := logrus.StandardLogger()
	out, formatter, level := l.Out, l.Formatter, l.GetLevel()
	l.SetOutput(w)
	l.SetFormatter(&logrus.TextFormatter{DisableColors: true, DisableTimestamp: true})
	l.SetLevel(logrus.InfoLevel)
	return func() { l.SetOutput(out); l.SetFormatter(formatter); l.SetLevel(level) }
}

func mustBuild(t *testing.T, args []string) string {
	t.Helper()
	return mustBuildIn(t, args, t.TempDir())
}

func mustBuildIn(t *testing.T, args []string, kanikoDir string) string {
	t.Helper()
	logs, err := runExecutorIn(t, args, kanikoDir)
	if err != nil {
		t.Fatalf("build %v failed: %v\n%s", args, err, logs)
	}
	return logs
}

// assertSteps checks which steps ran and which came from the cache.
func assertSteps(t *testing.T, logs string, cached, ran []string) {
	t.Helper()
	outputs := map[string]string{firstRun: firstOutput, secondRun: secondOutput}
	for _, step := range cached {
		if !strings.Contains(logs, cachedPrefix+step) {
			t.Errorf("%q was not taken from the cache:\n%s", step, logs)
		}
		if out, ok := outputs[step]; ok && strings.Contains(logs, out) {
			t.Errorf("%q ran although cached:\n%s", step, logs)
		}
	}
	for _, step := range ran {
		if strings.Contains(logs, cachedPrefix+step) {
			t.Errorf("%q came from the cache but should have run:\n%s", step, logs)
		}
		if out, ok := outputs[step]; ok && !strings.Contains(logs, out) {
			t.Errorf("%q did not run (no %q):\n%s", step, out, logs)
		}
	}
}

func (f *cacheFixture) layerDigests(t *testing.T, path string) []string {
	t.Helper()
	layers, err := f.reg.Pull(t, path).Layers()
	if err != nil {
		t.Fatal(err)
	}
	var digests []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
	}
	return digests
}

// oldestCacheEntry reads the cache manifest kiln exported to repo.
func (f *cacheFixture) oldestCacheEntry(t *testing.T, repo string) time.Time {
	t.Helper()
	ref, err := name.ParseReference(f.reg.Ref(repo + ":" + f.cacheTag(t, repo)))
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref, f.reg.RemoteOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	config, err := cacheConfigOf(desc)
	if err != nil {
		t.Fatalf("cache manifest %s: %v", ref, err)
	}
	oldest, ok := oldestEntry(config)
	if !ok {
		t.Fatalf("cache manifest %s records no creation times", ref)
	}
	return oldest
}

// cacheTag is the one BuildKit cache tag in repo, next to which kiln keeps
// the shaped layers (<tag>-shaped).
func (f *cacheFixture) cacheTag(t *testing.T, repo string) string {
	t.Helper()
	tags := f.reg.Tags(repo)
	if len(tags) != 2 || !strings.HasPrefix(tags[0], cacheTagPrefix) || tags[1] != tags[0]+shapedTagSuffix {
		t.Fatalf("cache repository %s has tags %v, want %s… and the same with %s", repo, tags, cacheTagPrefix, shapedTagSuffix)
	}
	return tags[0]
}

func TestCacheRepoReusesLayersInFreshBuild(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		f := newCacheFixture(t, env)
		build := f.args("--destination="+f.reg.Ref("app:1"), "--cache=true")

		first := mustBuild(t, build)
		assertSteps(t, first, nil, []string{firstRun, copyStep, secondRun})
		built := f.layerDigests(t, "app:1")
		created := f.oldestCacheEntry(t, "app/cache") // Kaniko's <destination>/cache

		second := mustBuild(t, build)
		assertSteps(t, second, []string{firstRun, copyStep, secondRun}, nil)
		if reused := f.layerDigests(t, "app:1"); !slices.Equal(reused, built) {
			t.Errorf("layers after a fully cached build differ:\n got %v\nwant %v", reused, built)
		}
		// Reuse keeps each entry's creation time: that is what --cache-ttl measures.
		if again := f.oldestCacheEntry(t, "app/cache"); !again.Equal(created) {
			t.Errorf("oldest cache entry moved from %s to %s after a cached build", created, again)
		}

		if err := os.WriteFile(filepath.Join(f.context, "a.txt"), []byte("v2\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		changed := mustBuild(t, build)
		assertSteps(t, changed, []string{firstRun}, []string{copyStep, secondRun})
		rebuilt := f.layerDigests(t, "app:1")
		if len(rebuilt) != len(built) {
			t.Fatalf("layer count changed: %v vs %v", rebuilt, built)
		}
		n := len(built)
		if !slices.Equal(rebuilt[:n-2], built[:n-2]) {
			t.Errorf("layers before the changed COPY were rebuilt:\n got %v\nwant %v", rebuilt[:n-2], built[:n-2])
		}
		if rebuilt[n-2] == built[n-2] || rebuilt[n-1] == built[n-1] {
			t.Errorf("COPY and the RUN after it kept their old layers: %v", rebuilt[n-2:])
		}

		expired := mustBuild(t, append(build, "--cache-ttl=1ns"))
		assertSteps(t, expired, nil, []string{firstRun, copyStep, secondRun})
		if !strings.Contains(expired, "older than --cache-ttl=1ns") {
			t.Errorf("no log line says why the cache was not used:\n%s", expired)
		}
	})
}

// shapedReuse lists the instructions whose shaped layer a build reused.
func shapedReuse(logs string) []string {
	var reused []string
	for line := range strings.SplitSeq(logs, "\n") {
		if _, rest, ok := strings.Cut(line, "Reusing the shaped layer "); ok {
			if _, what, ok := strings.Cut(rest, " of "); ok {
				what, _, _ = strings.Cut(what, " from ")
				reused = append(reused, strings.Trim(strings.ReplaceAll(what, `\"`, `"`), `"`))
			}
		}
	}
	return reused
}

// requestsFor lists the requests for blob digest, as "METHOD path".
func requestsFor(reg *testenv.Registry, digest string, methods ...string) []string {
	var found []string
	for _, r := range reg.Requests() {
		if strings.HasSuffix(r.Path, "/blobs/"+digest) && slices.Contains(methods, r.Method) {
			found = append(found, r.Method+" "+r.Path)
		}
	}
	return found
}

// blobUploads lists the requests that sent or committed blob data (the
// push permission check only opens and cancels an upload).
func blobUploads(reg *testenv.Registry) []string {
	var found []string
	for _, r := range reg.Writes() {
		if strings.Contains(r.Path, "/blobs/uploads/") && (r.Method == http.MethodPatch || r.Method == http.MethodPut) {
			found = append(found, r.Method+" "+r.Path)
		}
	}
	return found
}

// A fresh environment rebuilding from --cache-repo takes the Kaniko form
// of the cached layers from the cache repository: it neither re-shapes
// nor re-uploads nor downloads them, and the image is the one shaping from
// scratch gives.
func TestCacheRepoReusesShapedLayers(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		f := newCacheFixture(t, env)
		// One kaniko dir, as /kaniko in every CI job: shaping leaves it out
		// of every layer, so it is part of the shaped layers' keys.
		kanikoDir := t.TempDir()
		for _, reproducible := range []bool{true, false} {
			t.Run(fmt.Sprintf("reproducible=%v", reproducible), func(t *testing.T) {
				f.assertShapedReuse(t, kanikoDir, reproducible)
			})
		}
	})
}

// assertDiffIDs checks that the config's diff IDs are the layers' content
// (pulling checks the compressed digests).
func assertDiffIDs(t *testing.T, img v1.Image) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.RootFS.DiffIDs) != len(layers) {
		t.Fatalf("%d layers, %d diff IDs", len(layers), len(cf.RootFS.DiffIDs))
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := v1.SHA256(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got != cf.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: content %s, config says diff ID %s", i, got, cf.RootFS.DiffIDs[i])
		}
	}
}

func (f *cacheFixture) assertShapedReuse(t *testing.T, kanikoDir string, reproducible bool) {
	app, cache := fmt.Sprintf("app-%v", reproducible), fmt.Sprintf("cache-%v", reproducible)
	build := f.args("--destination="+f.reg.Ref(app+":1"), "--cache=true", "--cache-repo="+f.reg.Ref(cache))
	// What shaping decides: the image digest with --reproducible, else
	// (BuildKit's config has times of its own) the layers and diff IDs.
	var reusedBase []string
	if reproducible {
		build = append(build, "--reproducible")
		reusedBase = []string{"base layer"} // the re-tarred base layer
	}
	shaped := func() string {
		t.Helper()
		img := f.reg.Pull(t, app+":1")
		assertDiffIDs(t, img)
		if reproducible {
			d, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			return d.String()
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(f.layerDigests(t, app+":1"), cf.RootFS.DiffIDs)
	}
	mustBuild := func(t *testing.T, args []string) string {
		t.Helper()
		return mustBuildIn(t, args, kanikoDir)
	}

	if reused := shapedReuse(mustBuild(t, build)); len(reused) != 0 {
		t.Fatalf("the first build reused shaped layers %q", reused)
	}
	scratch := shaped()
	tag := f.cacheTag(t, cache)
	// The layers shaping made (a base layer it passes through is
	// BuildKit's own, which BuildKit may fetch from its cache).
	var layers []string
	buildkitLayers := f.layerDigests(t, cache+":"+tag)
	for _, d := range f.layerDigests(t, app+":1") {
		if !slices.Contains(buildkitLayers, d) {
			layers = append(layers, d)
		}
	}
	notDownloaded := func(layers []string) {
		t.Helper()
		for _, d := range layers {
			if got := requestsFor(f.reg, d, "GET"); len(got) > 0 {
				t.Errorf("the reused shaped layer %s was downloaded: %v", d, got)
			}
		}
	}

	f.reg.ResetRequests()
	second := mustBuild(t, build)
	assertSteps(t, second, []string{firstRun, copyStep, secondRun}, nil)
	if reused, want := shapedReuse(second), append(reusedBase, firstRun, copyStep, secondRun); !slices.Equal(reused, want) {
		t.Errorf("reused the shaped layers of %q, want %q", reused, want)
	}
	if uploads := blobUploads(f.reg); len(uploads) > 0 {
		t.Errorf("a fully cached build uploaded blobs: %v", uploads)
	}
	notDownloaded(layers)
	if got := shaped(); got != scratch {
		t.Errorf("image with reused layers %s, shaped from scratch %s", got, scratch)
	}

	// A changed COPY: the RUN below it is reused, the rest shaped anew.
	if err := os.WriteFile(filepath.Join(f.context, "a.txt"), []byte(fmt.Sprintf("v2 %v\n", reproducible)), 0o644); err != nil {
		t.Fatal(err)
	}
	f.reg.ResetRequests()
	changed := mustBuild(t, build)
	if reused, want := shapedReuse(changed), append(reusedBase, firstRun); !slices.Equal(reused, want) {
		t.Errorf("after the change reused %q, want %q", reused, want)
	}
	notDownloaded(layers[:len(layers)-2])
	withReuse := shaped()

	// The same BuildKit layers shaped from scratch: without the shaped
	// layers in the cache repository, the same image.
	ref, err := name.ParseReference(f.reg.Ref(cache + ":" + tag + shapedTagSuffix))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Delete(ref, f.reg.RemoteOptions()...); err != nil {
		t.Fatal(err)
	}
	again := mustBuild(t, build)
	assertSteps(t, again, []string{firstRun, copyStep, secondRun}, nil)
	if reused := shapedReuse(again); len(reused) != 0 {
		t.Errorf("reused %q although the shaped layers were deleted", reused)
	}
	if got := shaped(); got != withReuse {
		t.Errorf("image shaped from scratch %s, with the RUN's layer reused %s", got, withReuse)
	}
}

func TestLocalCacheAndNoPushCache(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		f := newCacheFixture(t, env)
		local := filepath.Join(t.TempDir(), "cache")
		build := f.args("--no-push", "--cache=true", "--cache-repo=oci:"+local)
		assertSteps(t, mustBuild(t, build), nil, []string{firstRun, copyStep, secondRun})
		if _, err := os.Stat(filepath.Join(local, "index.json")); err != nil {
			t.Fatalf("oci: cache not written: %v", err)
		}
		assertSteps(t, mustBuild(t, build), []string{firstRun, copyStep, secondRun}, nil)

		f.reg.ResetRequests()
		mustBuild(t, f.args("--destination="+f.reg.Ref("app:1"), "--cache=true",
			"--cache-repo="+f.reg.Ref("shared/cache"), "--no-push-cache"))
		if tags := f.reg.Tags("shared/cache"); len(tags) > 0 {
			t.Errorf("--no-push-cache pushed cache tags %v", tags)
		}
		for _, w := range f.reg.Writes() {
			if strings.Contains(w.Path, "/shared/cache/") {
				t.Errorf("--no-push-cache wrote to the cache repository: %s %s", w.Method, w.Path)
			}
		}
		if f.reg.Tags("app") == nil {
			t.Error("the image itself was not pushed")
		}
	})
}

// baseBlobFetches lists requests that downloaded the base image's layers.
func baseBlobFetches(reg *testenv.Registry) []string {
	var fetched []string
	for _, r := range reg.Requests() {
		if r.Method == "GET" && strings.HasPrefix(r.Path, "/v2/library/busybox/blobs/") {
			fetched = append(fetched, r.Path)
		}
	}
	return fetched
}

func TestCacheDirKeepsStateBetweenBuilds(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		f := newCacheFixture(t, env)
		cacheDir := t.TempDir()
		build := f.args("--no-push", "--cache=true", "--cache-dir="+cacheDir)

		assertSteps(t, mustBuild(t, build), nil, []string{firstRun, copyStep, secondRun})
		if len(baseBlobFetches(f.reg)) == 0 {
			t.Fatal("the first build did not download the base image; the registry log cannot show reuse")
		}
		if _, err := os.Stat(cacheDirRoot(cacheDir, env.Rootless)); err != nil {
			t.Fatalf("no BuildKit state under --cache-dir: %v", err)
		}

		f.reg.ResetRequests()
		assertSteps(t, mustBuild(t, build), []string{firstRun, copyStep, secondRun}, nil)
		if fetched := baseBlobFetches(f.reg); len(fetched) > 0 {
			t.Errorf("the base image was downloaded again despite --cache-dir: %v", fetched)
		}

		t.Run("concurrent", func(t *testing.T) {
			var logs testenv.SyncBuffer
			restore := captureLogs(&logs)
			defer restore()
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for i := range errs {
				wg.Go(func() { errs[i] = executeInto(t, &logs, build) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("concurrent build %d failed: %v", i, err)
				}
			}
			if !strings.Contains(logs.String(), "is in use by another build") {
				t.Errorf("no build reported falling back to a private state:\n%s", logs.String())
			}
			// The state is intact: one more build still takes everything from it.
			assertSteps(t, mustBuild(t, build), []string{firstRun, copyStep, secondRun}, nil)
		})

		t.Run("lock held elsewhere", func(t *testing.T) {
			state, err := LockCacheDirState(context.Background(), cacheDir, env.Rootless, false)
			if err != nil {
				t.Fatal(err)
			}
			defer state.Release()
			if _, err := LockCacheDirState(context.Background(), cacheDir, env.Rootless, false); !errors.Is(err, ErrCacheDirBusy) {
				t.Errorf("second lock: %v, want ErrCacheDirBusy", err)
			}
		})
	})
}

func TestWarmerFillsCacheDir(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		f := newCacheFixture(t, env)
		cacheDir := filepath.Join(t.TempDir(), "made-by-warmer")
		registry, err := compat.NewRegistrySettings(&flagmap.Options{InsecureRegistries: []string{f.reg.Host}}, "test")
		if err != nil {
			t.Fatal(err)
		}
		var logs testenv.SyncBuffer
		err = Warm(context.Background(), WarmOptions{
			Images:      []string{f.base},
			CacheDir:    cacheDir,
			Registry:    registry,
			StateParent: t.TempDir(),
			BinDir:      env.BinDir,
			Logger:      testenv.Logger(&logs),
		})
		if err != nil {
			t.Fatalf("Warm: %v\n%s", err, logs.String())
		}
		if !strings.Contains(logs.String(), "Cached image "+f.base) {
			t.Errorf("warmer log lacks the cached image:\n%s", logs.String())
		}
		if len(baseBlobFetches(f.reg)) == 0 {
			t.Fatal("the warmer did not download the base image")
		}

		f.reg.ResetRequests()
		mustBuild(t, f.args("--no-push", "--cache=true", "--cache-dir="+cacheDir))
		if fetched := baseBlobFetches(f.reg); len(fetched) > 0 {
			t.Errorf("the build downloaded the base image the warmer had cached: %v", fetched)
		}

		err = Warm(context.Background(), WarmOptions{
			Images: []string{f.reg.Ref("library/missing:1")}, CacheDir: cacheDir, Registry: registry,
			StateParent: t.TempDir(), BinDir: env.BinDir, Logger: testenv.Logger(&logs),
		})
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("warming only a missing image: error %v, want one line", err)
		}
	})
}

func TestCacheFreshness(t *testing.T) {
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	config := &cacheimporttypes.CacheConfig{
		Layers:  []cacheimporttypes.CacheLayer{{Annotations: &cacheimporttypes.LayerAnnotations{CreatedAt: now.Add(-time.Hour)}}},
		Records: []cacheimporttypes.CacheRecord{{Results: []cacheimporttypes.CacheResult{{CreatedAt: now.Add(-3 * time.Hour)}}}},
	}
	for _, tc := range []struct {
		ttl  time.Duration
		want bool
	}{
		{4 * time.Hour, true},
		{2 * time.Hour, false}, // the oldest entry decides, not the newest
		{0, true},
	} {
		if got := cacheFresh(config, tc.ttl, now); got != tc.want {
			t.Errorf("cacheFresh(ttl=%s) = %v, want %v", tc.ttl, got, tc.want)
		}
	}
	if !cacheFresh(&cacheimporttypes.CacheConfig{}, time.Nanosecond, now) {
		t.Error("a cache without times counts as stale; it should be used")
	}
}

func TestPlanLayerCache(t *testing.T) {
	registry, err := compat.NewRegistrySettings(&flagmap.Options{Insecure: true}, "test")
	if err != nil {
		t.Fatal(err)
	}
	plan := func(opts flagmap.Options) *LayerCache {
		t.Helper()
		opts.Cache, opts.CacheTTL = true, time.Hour
		cache, err := PlanLayerCache(context.Background(), LayerCacheConfig{Options: &opts, Registry: registry, Logger: testenv.Logger(&testenv.SyncBuffer{})})
		if err != nil {
			t.Fatal(err)
		}
		return cache
	}
	// A closed port: the age check fails, and the import is left to BuildKit.
	dest := "127.0.0.1:1/team/app:v1"
	inferred := plan(flagmap.Options{Destinations: []string{dest}})
	if !strings.HasPrefix(inferred.Ref, "127.0.0.1:1/team/app/cache:"+cacheTagPrefix) {
		t.Errorf("inferred cache ref %s, want <destination repository>/cache:%s…", inferred.Ref, cacheTagPrefix)
	}
	if len(inferred.Imports) != 1 || len(inferred.Exports) != 1 {
		t.Fatalf("imports %v exports %v, want one of each", inferred.Imports, inferred.Exports)
	}
	export := inferred.Exports[0].Attrs
	for k, v := range map[string]string{"mode": "max", "ignore-error": "true", "image-manifest": "true", "oci-mediatypes": "true", "registry.insecure": "true", "ref": inferred.Ref} {
		if export[k] != v {
			t.Errorf("export attr %s = %q, want %q", k, export[k], v)
		}
	}
	if other := plan(flagmap.Options{Destinations: []string{"127.0.0.1:1/team/app:v2"}}); other.Ref != inferred.Ref {
		t.Errorf("another tag of the same image uses cache %s, want %s", other.Ref, inferred.Ref)
	}
	if staged := plan(flagmap.Options{Destinations: []string{dest}, Target: "test"}); staged.Ref == inferred.Ref {
		t.Error("--target does not change the cache tag")
	}
	if tagged := plan(flagmap.Options{CacheRepo: "127.0.0.1:1/c:mine", NoPushCache: true}); tagged.Ref != "127.0.0.1:1/c:mine" || len(tagged.Exports) != 0 {
		t.Errorf("explicit tag with --no-push-cache: ref %s, exports %v", tagged.Ref, tagged.Exports)
	}
	if hub := plan(flagmap.Options{CacheRepo: "someone/cache"}); !strings.HasPrefix(hub.Ref, "docker.io/someone/cache:") {
		t.Errorf("Docker Hub cache ref %s, want docker.io/someone/cache:…", hub.Ref)
	}
	if none := plan(flagmap.Options{NoPush: true}); len(none.Imports)+len(none.Exports) != 0 {
		t.Errorf("no repository and no destination still configured a cache: %+v", none)
	}
	if _, err := PlanLayerCache(context.Background(), LayerCacheConfig{Options: &flagmap.Options{Cache: true, CacheRepo: "oci:"}, Registry: registry}); err == nil || !strings.Contains(err.Error(), "--cache-repo") {
		t.Errorf("oci: without a directory: %v, want an error naming --cache-repo", err)
	}
}

func TestWarmedDigestBaseBuildsWithRegistryDown(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		f := newCacheFixture(t, env)
		digest, err := f.reg.Pull(t, "library/busybox:latest").Digest()
		if err != nil {
			t.Fatal(err)
		}
		pinned := f.base + "@" + digest.String()
		cacheDir := filepath.Join(t.TempDir(), "cache")
		registry, err := compat.NewRegistrySettings(&flagmap.Options{InsecureRegistries: []string{f.reg.Host}}, "test")
		if err != nil {
			t.Fatal(err)
		}
		var logs testenv.SyncBuffer
		if err := Warm(context.Background(), WarmOptions{
			Images: []string{pinned}, CacheDir: cacheDir, Registry: registry,
			StateParent: t.TempDir(), BinDir: env.BinDir, Logger: testenv.Logger(&logs),
		}); err != nil {
			t.Fatalf("Warm: %v\n%s", err, logs.String())
		}
		dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + pinned + "\nRUN echo offline-$((1+1))\n"})
		if err := f.reg.Close(); err != nil {
			t.Fatal(err)
		}
		out := mustBuild(t, []string{"--context=" + dir, "--insecure-registry=" + f.reg.Host, "--no-push", "--cache=true", "--cache-dir=" + cacheDir})
		if !strings.Contains(out, "offline-2\n") {
			t.Errorf("the RUN step did not run:\n%s", out)
		}
	})
}

func TestProgressLogsCachedStepsLikeKaniko(t *testing.T) {
	var logs testenv.SyncBuffer
	now := time.Now()
	vertex := func(name string, cached bool) *client.Vertex {
		return &client.Vertex{Digest: digest.FromString(name), Name: name, Started: &now, Completed: &now, Cached: cached}
	}
	ch := make(chan *client.SolveStatus, 3)
	ch <- &client.SolveStatus{Vertexes: []*client.Vertex{vertex("[2/3] RUN make", true), vertex("[1/3] FROM docker.io/library/busybox:latest", true)}}
	ch <- &client.SolveStatus{Vertexes: []*client.Vertex{vertex("[2/3] RUN make", true), vertex("[3/3] COPY a /a", false)}}
	close(ch)
	if err := showProgress(ch, ProgressOptions{Logger: testenv.Logger(&logs), Stdout: &logs, Stderr: &logs}); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if got := strings.Count(out, `msg="Using caching version of cmd: RUN make"`); got != 1 {
		t.Errorf("cached RUN reported %d times, want once:\n%s", got, out)
	}
	if strings.Contains(out, "caching version of cmd: COPY") || strings.Contains(out, "caching version of cmd: FROM") {
		t.Errorf("a step that ran, or the base image, was reported as cached:\n%s", out)
	}
}
