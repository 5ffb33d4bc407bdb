package executor

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/kilnbuild/kiln/flagmap"
)

func TestOtherFlagsReachTheSolve(t *testing.T) {
	env := map[string]string{"TOKEN": "t0ken"}
	inv, err := flagmap.Parse([]string{"--no-push", "--secret", "id=tok,env=TOKEN",
		"--import-cache", "type=registry,ref=r.example.com/app:cache", "--export-cache", "r.example.com/app:cache",
		"--buildkit-opt", "build-arg:A=1", "--buildkit-opt", "target=final"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	extra, err := readOtherFlags(inv)
	if err != nil {
		t.Fatal(err)
	}
	req := SolveRequest{NoCache: true, Target: "build", OutputDir: t.TempDir(), ContextDir: t.TempDir(), DockerfilePath: t.TempDir() + "/Dockerfile"}
	extra.apply(&req)
	if string(req.Secrets["tok"]) != "t0ken" || req.NoCache {
		t.Errorf("secrets %q, no-cache %v (an imported cache must be read)", req.Secrets, req.NoCache)
	}
	if len(req.CacheImports) != 1 || req.CacheImports[0].Attrs["ref"] != "r.example.com/app:cache" || len(req.CacheExports) != 1 || req.CacheExports[0].Type != "registry" {
		t.Errorf("caches %+v %+v", req.CacheImports, req.CacheExports)
	}
	attrs := frontendAttrs(req)
	if attrs["build-arg:A"] != "1" || attrs["target"] != "final" {
		t.Errorf("--buildkit-opt must win over kiln's own options: %v", attrs)
	}
	opt, err := solveOpt(req)
	if err != nil {
		t.Fatal(err)
	}
	if len(opt.Session) != 3 {
		t.Errorf("want auth, files and secrets attachables, got %d", len(opt.Session))
	}
}

func TestAnnotationsInTheManifest(t *testing.T) {
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	if withAnnotations(img, nil) != img {
		t.Error("no --annotation must leave the image (and its digest) alone")
	}
	annotated := withAnnotations(img, map[string]string{"org.opencontainers.image.revision": "abc123"})
	raw, err := annotated.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"org.opencontainers.image.revision":"abc123"`) {
		t.Errorf("manifest lacks the annotation: %s", raw)
	}
}

func TestAutomaticArgsUnsetLikeKaniko(t *testing.T) {
	attrs := frontendAttrs(SolveRequest{DockerfilePath: "/ctx/Dockerfile", Platform: "linux/arm64", BuildArgs: map[string]string{"TARGETARCH": "arm64"}})
	for _, name := range []string{"BUILDPLATFORM", "TARGETPLATFORM", "TARGETOS", "TARGETVARIANT", "TARGETSTAGE"} {
		if v, ok := attrs["build-arg:"+name]; !ok || v != "" {
			t.Errorf("build-arg:%s = %q (set %v), want it empty as Kaniko leaves it", name, v, ok)
		}
	}
	if attrs["build-arg:TARGETARCH"] != "arm64" || attrs["platform"] != "linux/arm64" {
		t.Errorf("--build-arg and --custom-platform must still reach BuildKit: %v", attrs)
	}
}
