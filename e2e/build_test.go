package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/kilnbuild/kiln/internal/testenv"
)

const (
	registryUser     = "builder"
	registryPassword = "correct-horse"
)

// multistageArgs builds testdata/multistage with the labels and build arg the
// image assertions expect.
func multistageArgs(t *testing.T) []string {
	t.Helper()
	ctx := buildContext(t, "multistage")
	// An unusual mode, set here because git keeps only the executable bit.
	if err := os.Chmod(filepath.Join(ctx, "settings.conf"), 0o604); err != nil {
		t.Fatal(err)
	}
	return []string{
		"--context", "dir://" + ctx,
		"--dockerfile", "Dockerfile",
		"--build-arg", "GREETING=hola",
		"--label", "org.example.team=builders",
		"--label", "org.example.version=1.2",
	}
}

// TestMultiStageBuildBasicAuth: plain HTTP registry with basic auth,
// credentials from DOCKER_CONFIG, every Kaniko output file, and the tarball
// run by Docker.
func TestMultiStageBuildBasicAuth(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t, testenv.WithBasicAuth(registryUser, registryPassword))
	dockerConfig := testenv.DockerConfig(t, map[string]string{reg.Host: registryUser + ":" + registryPassword})

	forEachMode(t, func(t *testing.T, m mode) {
		dest1, dest2 := reg.Ref("e2e/"+m.name+"/app:v1"), reg.Ref("e2e/"+m.name+"/other")
		out := m.dir(t)
		builderOutput := filepath.Join(out, "builder")
		if err := os.Mkdir(builderOutput, 0o755); err != nil {
			t.Fatal(err)
		}
		if m.rootless {
			os.Chown(builderOutput, m.user.UID, m.user.GID)
		}
		args := append(multistageArgs(t),
			"--registry-mirror", reg.Host, "--insecure-registry", reg.Host,
			"--destination", dest1, "--destination", dest2,
			"--digest-file", filepath.Join(out, "digest"),
			"--image-name-with-digest-file", filepath.Join(out, "names"),
			"--oci-layout-path", filepath.Join(out, "layout"),
			"--tar-path", filepath.Join(out, "image.tar"),
		)
		state := m.stateDir(t)
		r := m.run(t, state, args, "DOCKER_CONFIG="+dockerConfig, "BUILDER_OUTPUT="+builderOutput)
		r.mustSucceed(t)
		r.assertDaemons(t, m, false)

		img, digest := pulledImage(t, reg, dest1)
		if _, other := pulledImage(t, reg, dest2); other != digest {
			t.Errorf("%s has digest %s, %s has %s: both destinations must get the same image", dest1, digest, dest2, other)
		}
		assertMultistageImage(t, img)

		assertFileContent(t, filepath.Join(out, "digest"), digest.String())
		assertFileContent(t, filepath.Join(out, "names"),
			repoName(t, dest1)+"@"+digest.String()+"\n"+repoName(t, dest2)+"@"+digest.String()+"\n")
		assertFileContent(t, filepath.Join(builderOutput, "images"),
			fmt.Sprintf("{\"name\":%q,\"digest\":%q}\n{\"name\":%q,\"digest\":%q}\n", dest1, digest, dest2, digest))
		assertOCILayout(t, filepath.Join(out, "layout"), img)
		assertTarball(t, filepath.Join(out, "image.tar"), img, dest1, dest2+":latest")
		assertDockerRuns(t, filepath.Join(out, "image.tar"), []string{dest1, dest2 + ":latest"}, "hola from the build stage\n")
	})
}

// TestMultiStageBuildTLS: HTTPS registry with basic auth trusted through
// --registry-certificate, credentials in <kaniko dir>/.docker/config.json as
// Kaniko reads them once --kaniko-dir moves the kaniko dir.
func TestMultiStageBuildTLS(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t, testenv.WithTLS(), testenv.WithBasicAuth(registryUser, registryPassword))

	forEachMode(t, func(t *testing.T, m mode) {
		dest1, dest2 := reg.Ref("e2e/"+m.name+"/app:v1"), reg.Ref("e2e/"+m.name+"/other")
		out := m.dir(t)
		state := m.stateDir(t)
		dockerDir := filepath.Join(state, ".docker")
		if err := os.Mkdir(dockerDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := testenv.WriteDockerConfig(dockerDir, map[string]string{reg.Host: registryUser + ":" + registryPassword}); err != nil {
			t.Fatal(err)
		}
		args := append(multistageArgs(t),
			"--kaniko-dir", state,
			"--registry-mirror", reg.Host,
			"--registry-certificate", reg.Host+"="+reg.CAFile,
			"--destination", dest1, "--destination", dest2,
			"--digest-file", filepath.Join(out, "digest"),
			"--image-name-tag-with-digest-file", filepath.Join(out, "names"),
		)
		r := m.run(t, state, args)
		r.mustSucceed(t)
		r.assertDaemons(t, m, false)

		img, digest := pulledImage(t, reg, dest1)
		assertMultistageImage(t, img)
		assertFileContent(t, filepath.Join(out, "digest"), digest.String())
		assertFileContent(t, filepath.Join(out, "names"),
			repoName(t, dest1)+":v1@"+digest.String()+"\n"+repoName(t, dest2)+":latest@"+digest.String()+"\n")
	})
}

// pulledImage pulls ref with go-containerregistry and returns the image and
// its manifest digest as the registry serves it.
func pulledImage(t *testing.T, reg *testenv.Registry, ref string) (v1.Image, v1.Hash) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r, reg.RemoteOptions()...)
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatalf("%s is not an image: %v", ref, err)
	}
	return img, desc.Digest
}

// repoName is ggcr's Repository.Name(), what Kaniko's name files print.
func repoName(t *testing.T, ref string) string {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	return tag.Context().Name()
}

// assertMultistageImage checks what testdata/multistage's Dockerfile and
// multistageArgs say the image is.
func assertMultistageImage(t *testing.T, img v1.Image) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	for _, env := range []string{"APP_HOME=/app", "GREETING_FILE=/app/message.txt"} {
		if !slices.Contains(c.Env, env) {
			t.Errorf("config Env %q lacks %q", c.Env, env)
		}
	}
	if slices.ContainsFunc(c.Env, func(e string) bool { return strings.HasPrefix(e, "GREETING=") }) {
		t.Errorf("config Env %q holds the build arg GREETING", c.Env)
	}
	checks := []struct {
		field     string
		got, want any
	}{
		{"User", c.User, "1234:2345"},
		{"WorkingDir", c.WorkingDir, "/app"},
		{"Entrypoint", c.Entrypoint, []string{"/bin/cat"}},
		{"Cmd", c.Cmd, []string{"/app/message.txt"}},
		{"Labels", c.Labels, map[string]string{"org.example.team": "builders", "org.example.version": "1.2"}},
		{"architecture", cf.Architecture, runtime.GOARCH},
	}
	for _, check := range checks {
		if !reflect.DeepEqual(check.got, check.want) {
			t.Errorf("config %s = %#v, want %#v", check.field, check.got, check.want)
		}
	}

	files := imageFiles(t, img, "app/")
	want := map[string]imageFile{
		"app/message.txt":   {content: "hola from the build stage\n", uid: 0, gid: 0, mode: 0o644},
		"app/out/data.txt":  {content: "made by RUN\n", uid: 0, gid: 0, mode: 0o640},
		"app/settings.conf": {content: "mode = e2e\n", uid: 1234, gid: 2345, mode: 0o604},
		// Kaniko's RUN ignores USER's group; uid 1234 has no passwd entry, so gid = uid.
		"app/state/uid.txt": {content: "1234\n", uid: 1234, gid: 1234, mode: 0o644},
	}
	for path, w := range want {
		got, ok := files[path]
		if !ok {
			t.Errorf("image lacks /%s", path)
			continue
		}
		if got != w {
			t.Errorf("/%s = %+v, want %+v", path, got, w)
		}
	}
}

type imageFile struct {
	content  string
	uid, gid int
	mode     int64
}

// imageFiles reads the flattened image's regular files whose path (without
// the leading slash) starts with prefix.
func imageFiles(t *testing.T, img v1.Image, prefix string) map[string]imageFile {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]imageFile{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading image filesystem: %v", err)
		}
		path := strings.TrimPrefix(hdr.Name, "/")
		if hdr.Typeflag != tar.TypeReg || !strings.HasPrefix(path, prefix) {
			continue
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[path] = imageFile{content: string(content), uid: hdr.Uid, gid: hdr.Gid, mode: hdr.Mode & 0o7777}
	}
	return files
}

// rootFile returns the content of a regular file in the image.
func rootFile(t *testing.T, img v1.Image, path string) string {
	t.Helper()
	return imageFiles(t, img, path)[path].content
}

func assertFileContent(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("output file: %v", err)
		return
	}
	if string(got) != want {
		t.Errorf("%s = %q, want exactly %q", filepath.Base(path), got, want)
	}
}

// assertOCILayout compares the layout with what go-containerregistry's
// layout.Write + AppendImage (Kaniko's code path) makes of the pushed image.
func assertOCILayout(t *testing.T, dir string, pushed v1.Image) {
	t.Helper()
	want := t.TempDir()
	idx, err := layout.Write(want, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := idx.AppendImage(pushed); err != nil {
		t.Fatal(err)
	}
	wantFiles, gotFiles := dirFiles(t, want), dirFiles(t, dir)
	if !reflect.DeepEqual(slices.Sorted(maps.Keys(gotFiles)), slices.Sorted(maps.Keys(wantFiles))) {
		t.Errorf("--oci-layout-path holds %v, want %v", slices.Sorted(maps.Keys(gotFiles)), slices.Sorted(maps.Keys(wantFiles)))
	}
	for path, content := range wantFiles {
		if got, ok := gotFiles[path]; ok && !bytes.Equal(got, content) {
			t.Errorf("--oci-layout-path %s differs from Kaniko's:\n got %q\nwant %q", path, shorten(got), shorten(content))
		}
	}
	// And it is readable as a layout.
	readIdx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("--oci-layout-path is not a readable OCI layout: %v", err)
	}
	if _, err := readIdx.IndexManifest(); err != nil {
		t.Errorf("--oci-layout-path index: %v", err)
	}
}

func dirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel], err = os.ReadFile(path)
		return err
	})
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	return files
}

// assertTarball compares the --tar-path file with go-containerregistry's
// tarball.MultiWrite of the pushed image (Kaniko's code path): same entries,
// same bytes, RepoTags in any order (Kaniko's come from a map).
func assertTarball(t *testing.T, path string, pushed v1.Image, repoTags ...string) {
	t.Helper()
	refs := map[name.Tag]v1.Image{}
	for _, tag := range repoTags {
		ref, err := name.NewTag(tag)
		if err != nil {
			t.Fatal(err)
		}
		refs[ref] = pushed
	}
	var want bytes.Buffer
	if err := tarball.MultiWrite(refs, &want); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("--tar-path: %v", err)
	}
	defer f.Close()
	got, wantEntries := tarEntries(t, f), tarEntries(t, &want)
	if !reflect.DeepEqual(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(wantEntries))) {
		t.Fatalf("--tar-path entries %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(wantEntries)))
	}
	for entry, content := range wantEntries {
		if entry == "manifest.json" {
			if g, w := tarManifest(t, got[entry]), tarManifest(t, content); !reflect.DeepEqual(g, w) {
				t.Errorf("--tar-path manifest.json = %+v, want %+v", g, w)
			}
			continue
		}
		if !bytes.Equal(got[entry], content) {
			t.Errorf("--tar-path entry %s differs from Kaniko's", entry)
		}
	}
}

// tarEntries reads a tarball's regular files, checking Kaniko's header form
// (mode 0644, zero mtime) on the way.
func tarEntries(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	entries := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return entries
		}
		if err != nil {
			t.Fatalf("reading tarball: %v", err)
		}
		if hdr.Mode != 0o644 || hdr.ModTime.Unix() != 0 {
			t.Errorf("tarball entry %s: mode %o mtime %v, want 0644 and zero", hdr.Name, hdr.Mode, hdr.ModTime)
		}
		if entries[hdr.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
}

type tarManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func tarManifest(t *testing.T, raw []byte) []tarManifestEntry {
	t.Helper()
	var m []tarManifestEntry
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("tarball manifest.json: %v", err)
	}
	for i := range m {
		slices.Sort(m[i].RepoTags)
	}
	return m
}

// assertDockerRuns loads the tarball into the machine's Docker engine and
// checks it loads every tag and `docker run <first tag>` prints want.
func assertDockerRuns(t *testing.T, tarPath string, tags []string, want string) {
	t.Helper()
	testenv.RequireDocker(t)
	out, err := exec.Command("docker", "load", "--input", tarPath).CombinedOutput()
	t.Cleanup(func() { exec.Command("docker", append([]string{"rmi", "--force"}, tags...)...).Run() })
	if err != nil {
		t.Fatalf("docker load: %v: %s", err, out)
	}
	for _, tag := range tags {
		if !strings.Contains(string(out), "Loaded image: "+tag+"\n") {
			t.Errorf("docker load printed %q, want it to load %s", out, tag)
		}
	}
	tag := tags[0]
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("docker", "run", "--rm", "--network=none", tag)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker run %s: %v: %s", tag, err, stderr.String())
	}
	if stdout.String() != want {
		t.Errorf("docker run %s printed %q, want %q", tag, stdout.String(), want)
	}
}

func shorten(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}
