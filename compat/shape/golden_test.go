package shape_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/kilnbuild/kiln/compat/shape"
	"github.com/kilnbuild/kiln/conformance/corpus"
	"github.com/kilnbuild/kiln/conformance/golden"
	"github.com/kilnbuild/kiln/conformance/inspect"
	"github.com/kilnbuild/kiln/internal/testenv"
)

// goldenCases must match Kaniko's golden exactly (L4: same image digest)
// once shaped; hardlinkCases differ only in the link names Kaniko writes
// absolute (docs/conformance.md), so they reach L2.
var (
	goldenCases   = []string{"run-delete-from-base", "run-modify-base-file", "run-replace-dir-with-file", "run-special-bits", "run-empty-result", "run-exec-form", "run-shell-directive", "workdir-new", "workdir-existing", "workdir-relative", "copy-chmod", "copy-onto-symlinked-dir", "add-local-tar", "env-replace", "label", "cmd-shell-form", "cmd-entrypoint-exec", "scratch-base", "scratch-multistage", "multistage-target", "multistage-stage-reuse", "many-files"}
	hardlinkCases = []string{"run-hardlinks"}
)

// kilnBuilder builds corpus cases with bin/executor into OCI layouts.
type kilnBuilder struct {
	exe, mirror string
	user        *testenv.User
	flags       []string // extra executor flags
}

func newKilnBuilder(t *testing.T) *kilnBuilder {
	testenv.RequireRoot(t)
	bins := testenv.Binaries(t)
	reg := testenv.StartRegistry(t)
	testenv.SeedMirror(t, reg)
	return &kilnBuilder{exe: bins.Executor, mirror: reg.Host}
}

// build runs the case and returns BuildKit's (unshaped) image.
func (b *kilnBuilder) build(t *testing.T, c *corpus.Case) v1.Image {
	t.Helper()
	dir := testenv.ReadableTempDir(t)
	if b.user != nil {
		dir = testenv.SharedTempDir(t, *b.user)
	}
	ctxDir := filepath.Join(dir, "context")
	if err := c.Materialize(ctxDir); err != nil {
		t.Fatalf("materialising %s: %v", c.Name, err)
	}
	out := filepath.Join(dir, "oci")
	args := append(golden.CaseArgsIn(c, ctxDir),
		"--registry-mirror="+b.mirror, "--insecure-registry="+b.mirror, "--no-push", "--oci-layout-path="+out)
	args = append(args, b.flags...)
	var cmd *exec.Cmd
	if b.user != nil {
		cmd = b.user.Command(context.Background(), b.exe, args...)
	} else {
		cmd = exec.Command(b.exe, args...)
		cmd.Env = os.Environ()
	}
	for k, v := range c.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if output, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", c.Name, err, output)
	}
	idx, err := layout.ImageIndexFromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) != 1 {
		t.Fatalf("%s: layout index: %v (%d manifests)", c.Name, err, len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// shapeCase shapes a case's image with the options the executor derives
// from the case's flags.
func shapeCase(t *testing.T, c *corpus.Case, img v1.Image) v1.Image {
	t.Helper()
	dockerfile, err := os.ReadFile(filepath.Join(c.Dir, c.Dockerfile))
	if err != nil {
		t.Fatal(err)
	}
	shaped, err := shape.Kaniko(img, shape.Options{
		WorkDir:      t.TempDir(),
		Reproducible: true,
		Dockerfile:   dockerfile,
		Target:       c.Target,
		BuildArgs:    c.BuildArgs,
		IgnorePaths:  []string{"/var/run"},
	})
	if err != nil {
		t.Fatalf("shaping %s: %v", c.Name, err)
	}
	return shaped
}

func loadCase(t *testing.T, name string) (*corpus.Case, *golden.Golden) {
	t.Helper()
	root := testenv.RepoRoot(t)
	c, err := corpus.LoadCase(filepath.Join(root, "conformance", "cases", name))
	if err != nil {
		t.Fatal(err)
	}
	g, err := golden.Read(filepath.Join(root, "conformance", "golden"), name)
	if err != nil {
		t.Fatalf("golden for %s: %v", name, err)
	}
	return c, g
}

// level is the conformance level the shaped image reaches against the
// golden (L2 files, L3 layers, L4 digest), with what differs.
func level(t *testing.T, g *golden.Golden, shaped v1.Image) (int, []string) {
	t.Helper()
	got, err := inspect.Inspect(shaped, inspect.Options{MaxListedEntries: golden.MaxListedEntries})
	if err != nil {
		t.Fatal(err)
	}
	want := g.Image
	diffs := golden.Compare(want, got)
	switch {
	case want.ManifestDigest == got.ManifestDigest:
		return corpus.LevelDigest, nil
	case want.FilesystemDigest != got.FilesystemDigest:
		return corpus.LevelConfig, diffs
	case len(want.Layers) != len(got.Layers):
		return corpus.LevelFiles, diffs
	}
	for i := range want.Layers {
		if want.Layers[i].EntriesDigest != got.Layers[i].EntriesDigest {
			return corpus.LevelFiles, diffs
		}
	}
	return corpus.LevelLayers, diffs
}

func TestShapedBuildsMatchKanikoGoldens(t *testing.T) {
	b := newKilnBuilder(t)
	check := func(name string, want int) {
		t.Run(name, func(t *testing.T) {
			c, g := loadCase(t, name)
			got, diffs := level(t, g, shapeCase(t, c, b.build(t, c)))
			if got < want {
				t.Fatalf("%s reaches %s, want %s: %s", name, corpus.LevelName(got), corpus.LevelName(want), strings.Join(diffs, "; "))
			}
		})
	}
	for _, name := range goldenCases {
		check(name, corpus.LevelDigest)
	}
	for _, name := range hardlinkCases {
		check(name, corpus.LevelFiles)
	}
}

// TestRootlessAndRootfulShapeToTheSameDigest: BuildKit's layers differ
// between its modes (times, sandbox mount points); the shaped images do not.
func TestRootlessAndRootfulShapeToTheSameDigest(t *testing.T) {
	b := newKilnBuilder(t)
	u := testenv.NonRootUser(t)
	rootless := &kilnBuilder{exe: b.exe, mirror: b.mirror, user: &u}
	for _, name := range []string{"run-delete-from-base", "run-hardlinks", "workdir-new"} {
		t.Run(name, func(t *testing.T) {
			c, _ := loadCase(t, name)
			rootful := digestOf(t, shapeCase(t, c, b.build(t, c)))
			asUser := digestOf(t, shapeCase(t, c, rootless.build(t, c)))
			if rootful != asUser {
				t.Fatalf("%s: rootful %s, rootless %s", name, rootful, asUser)
			}
		})
	}
}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// TestWarmDaemonGivesTheSameDigest: a build on BuildKit state kept in
// --cache-dir (cold, then warm with every step cached) has the digest of a
// build without cache.
func TestWarmDaemonGivesTheSameDigest(t *testing.T) {
	b := newKilnBuilder(t)
	cached := &kilnBuilder{exe: b.exe, mirror: b.mirror, flags: []string{"--cache=true", "--cache-repo=" + b.mirror + "/kiln-cache", "--cache-dir=" + testenv.ReadableTempDir(t)}}
	for _, name := range []string{"run-modify-base-file", "volume", "copy-same-file-many"} {
		t.Run(name, func(t *testing.T) {
			c, g := loadCase(t, name)
			plain := digestOf(t, b.build(t, c))
			cold := digestOf(t, cached.build(t, c))
			warm := digestOf(t, cached.build(t, c))
			if plain != cold || cold != warm {
				t.Fatalf("%s: without cache %s, cold cache %s, warm cache %s", name, plain, cold, warm)
			}
			if plain != g.Image.ManifestDigest {
				t.Errorf("%s: %s, Kaniko's golden %s", name, plain, g.Image.ManifestDigest)
			}
		})
	}
}
