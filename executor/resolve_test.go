package executor

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/buildkit/solver/pb"
	"github.com/moby/buildkit/sourcepolicy"
	spb "github.com/moby/buildkit/sourcepolicy/pb"

	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/flagmap"
	"github.com/kilnbuild/kiln/internal/testenv"
)

// resolverFor builds a resolver from Kaniko flags, recording its sleeps.
func resolverFor(t *testing.T, opts flagmap.Options, logs *bytes.Buffer, sleeps *[]time.Duration) *BaseImageResolver {
	t.Helper()
	settings, err := compat.NewRegistrySettings(&opts, "test")
	if err != nil {
		t.Fatal(err)
	}
	return &BaseImageResolver{
		Registry: settings,
		Keychain: authn.DefaultKeychain,
		Platform: opts.CustomPlatform,
		Log:      testenv.Logger(logs),
		Sleep: func(_ context.Context, d time.Duration) error {
			*sleeps = append(*sleeps, d)
			return nil
		},
	}
}

func TestResolveFollowsKanikoMappingRules(t *testing.T) {
	original := testenv.StartRegistry(t)
	emptyMirror := testenv.StartRegistry(t)
	mirror := testenv.StartRegistry(t)
	img := testenv.BusyboxImage(t)
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	testenv.PushBase(t, original, "team/base:1", img)
	testenv.PushBase(t, mirror, "cache/team/base:1", img)
	testenv.SeedMirror(t, mirror)
	down := testenv.StartRegistry(t)
	down.Close()
	insecure := []string{original.Host, emptyMirror.Host, mirror.Host, down.Host}

	cases := []struct {
		name     string
		opts     flagmap.Options
		image    string
		want     string // pinned reference; "" expects an error
		wantErr  string
		wantLogs []string
	}{
		{
			name:  "mirror-lacks-image-falls-back-to-original",
			opts:  flagmap.Options{RegistryMaps: map[string][]string{original.Host: {emptyMirror.Host}}},
			image: original.Ref("team/base:1"),
			want:  original.Ref("team/base:1") + "@" + digest.String(),
			wantLogs: []string{
				"Retrieving image manifest " + original.Ref("team/base:1"),
				"Retrieving image " + original.Ref("team/base:1") + " from mapped registry " + emptyMirror.Host,
				"Failed to retrieve image " + original.Ref("team/base:1") + " from remapped registry " + emptyMirror.Host,
				"Retrieving image " + original.Ref("team/base:1") + " from registry " + original.Host,
			},
		},
		{
			name:  "map-with-prefix-tried-in-order",
			opts:  flagmap.Options{RegistryMaps: map[string][]string{original.Host: {emptyMirror.Host, mirror.Host + "/cache"}}},
			image: original.Ref("team/base:1"),
			want:  mirror.Ref("cache/team/base:1") + "@" + digest.String(),
		},
		{
			name:  "docker-hub-mirror",
			opts:  flagmap.Options{RegistryMirrors: []string{emptyMirror.Host, mirror.Host}},
			image: "busybox",
			want:  mirror.Ref("library/busybox:latest") + "@" + digest.String(),
		},
		{
			name:    "skip-default-registry-fallback",
			opts:    flagmap.Options{RegistryMaps: map[string][]string{original.Host: {emptyMirror.Host}}, SkipDefaultRegistryFallback: true},
			image:   original.Ref("team/base:1"),
			wantErr: "image not found on any configured mapped registries for " + original.Ref("team/base:1"),
		},
		{
			name:    "missing-everywhere",
			image:   original.Ref("team/missing:1"),
			wantErr: "retrieving base image " + original.Ref("team/missing:1") + ": ",
		},
		{
			name:  "by-digest-needs-no-registry",
			image: down.Ref("team/base@" + digest.String()),
			want:  down.Ref("team/base@" + digest.String()),
		},
		{
			name:  "by-digest-through-map",
			opts:  flagmap.Options{RegistryMaps: map[string][]string{original.Host: {mirror.Host + "/cache"}}},
			image: original.Ref("team/base@" + digest.String()),
			want:  mirror.Ref("cache/team/base@" + digest.String()),
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opts.InsecureRegistries = insecure
			var logs bytes.Buffer
			var sleeps []time.Duration
			pins, err := resolverFor(t, c.opts, &logs, &sleeps).Resolve(context.Background(), []string{c.image})
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error spans lines: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v\nlogs:\n%s", err, logs.String())
			}
			if len(pins) != 1 || pins[0].Image != c.image || pins[0].Pinned != c.want {
				t.Errorf("pins = %+v, want %s pinned to %s", pins, c.image, c.want)
			}
			for _, want := range c.wantLogs {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("logs lack %q:\n%s", want, logs.String())
				}
			}
		})
	}
}

func TestResolveRetriesLikeImageDownloadRetry(t *testing.T) {
	img := testenv.BusyboxImage(t)
	for _, retries := range []int{0, 1} {
		reg := testenv.StartRegistry(t)
		ref := testenv.PushBase(t, reg, "team/base:1", img)
		// go-containerregistry makes three tries of its own per pull.
		if err := reg.InjectFault(testenv.Fault{Count: 3, Status: http.StatusTooManyRequests, Path: "^/v2/team/base/manifests/"}); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		var sleeps []time.Duration
		opts := flagmap.Options{InsecureRegistries: []string{reg.Host}, ImageDownloadRetry: retries}
		_, err := resolverFor(t, opts, &logs, &sleeps).Resolve(context.Background(), []string{ref})
		if retries == 0 {
			if err == nil {
				t.Fatalf("without --image-download-retry a 429 must fail the pull")
			}
			if len(sleeps) != 0 {
				t.Errorf("slept %v without retries", sleeps)
			}
			continue
		}
		if err != nil {
			t.Fatalf("--image-download-retry=1 must outlast three 429s: %v\nlogs:\n%s", err, logs.String())
		}
		if want := []time.Duration{time.Second}; !slices.Equal(sleeps, want) {
			t.Errorf("slept %v, want Kaniko's %v", sleeps, want)
		}
		if !strings.Contains(logs.String(), "Retrying operation after 1s") {
			t.Errorf("no retry warning in logs:\n%s", logs.String())
		}
	}
}

func TestResolveCustomPlatformNeedsItInTheIndex(t *testing.T) {
	original := testenv.StartRegistry(t)
	mirror := testenv.StartRegistry(t)
	img := testenv.BusyboxImage(t)
	withPlatform := func(os, arch string) mutate.IndexAddendum {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = os, arch
		platformImg, err := mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		return mutate.IndexAddendum{Add: platformImg, Descriptor: v1Descriptor(os, arch)}
	}
	full := mutate.AppendManifests(empty.Index, withPlatform("linux", "amd64"), withPlatform("linux", "arm64"))
	partial := mutate.AppendManifests(empty.Index, withPlatform("linux", "amd64"))
	seedIndex(t, original, "multi:1", full)
	seedIndex(t, mirror, "multi:1", partial)
	fullDigest, _ := full.Digest()
	partialDigest, _ := partial.Digest()

	for platform, want := range map[string]string{
		"linux/amd64": mirror.Ref("multi:1") + "@" + partialDigest.String(),
		"linux/arm64": original.Ref("multi:1") + "@" + fullDigest.String(),
	} {
		var logs bytes.Buffer
		var sleeps []time.Duration
		opts := flagmap.Options{
			RegistryMaps:       map[string][]string{original.Host: {mirror.Host}},
			InsecureRegistries: []string{original.Host, mirror.Host},
			CustomPlatform:     platform,
		}
		pins, err := resolverFor(t, opts, &logs, &sleeps).Resolve(context.Background(), []string{original.Ref("multi:1")})
		if err != nil {
			t.Fatalf("%s: %v", platform, err)
		}
		if pins[0].Pinned != want {
			t.Errorf("--custom-platform %s pinned %s, want the index %s", platform, pins[0].Pinned, want)
		}
	}
}

// TestSourcePolicyMatchesTheFrontendsSpelling evaluates the policy the way
// the daemon does, with the identifiers the Dockerfile frontend produces.
func TestSourcePolicyMatchesTheFrontendsSpelling(t *testing.T) {
	pinnedHub := "127.0.0.1:5000/library/busybox:latest@sha256:" + strings.Repeat("a", 64)
	pinnedPrivate := "mirror.example/cache/team/base:1@sha256:" + strings.Repeat("b", 64)
	policy, err := SourcePolicy([]PinnedImage{
		{Image: "busybox", Pinned: pinnedHub},
		{Image: "registry.example:5000/team/base:1", Pinned: pinnedPrivate},
	})
	if err != nil {
		t.Fatal(err)
	}
	engine := sourcepolicy.NewEngine([]*spb.Policy{policy})
	for identifier, want := range map[string]string{
		"docker-image://docker.io/library/busybox:latest":   "docker-image://" + pinnedHub,
		"docker-image://docker.io/library/busybox":          "docker-image://" + pinnedHub,
		"docker-image://registry.example:5000/team/base:1":  "docker-image://" + pinnedPrivate,
		"docker-image://docker.io/library/busybox:1.36":     "docker-image://docker.io/library/busybox:1.36",
		"docker-image://" + pinnedHub:                       "docker-image://" + pinnedHub,
		"docker-image://registry.example:5000/team/other:1": "docker-image://registry.example:5000/team/other:1",
	} {
		op := &pb.SourceOp{Identifier: identifier}
		if _, err := engine.Evaluate(context.Background(), op); err != nil {
			t.Fatalf("%s: %v", identifier, err)
		}
		if op.Identifier != want {
			t.Errorf("%s became %s, want %s", identifier, op.Identifier, want)
		}
	}
	if p, err := SourcePolicy(nil); p != nil || err != nil {
		t.Errorf("no pins gave policy %v, %v; want none", p, err)
	}
}

func v1Descriptor(os, arch string) v1.Descriptor {
	return v1.Descriptor{Platform: &v1.Platform{OS: os, Architecture: arch}}
}

func seedIndex(t *testing.T, reg *testenv.Registry, path string, idx v1.ImageIndex) {
	t.Helper()
	ref, err := name.ParseReference(reg.Ref(path))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, reg.RemoteOptions()...); err != nil {
		t.Fatalf("seeding index %s: %v", ref, err)
	}
}
