package dropin

import (
	"archive/tar"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/kilnbuild/kiln/internal/testenv"
)

// Kaniko's security model: kiln's images as root with no security options
// (and with CRI-O's capabilities) run BuildKit embedded, RUN in the
// container's own root filesystem.

// imageFiles returns the regular files of repo:tag (path → content).
func imageFiles(t *testing.T, reg *testenv.Registry, ref string) map[string]string {
	t.Helper()
	img := reg.Pull(t, ref)
	rc := mutate.Extract(img)
	defer rc.Close()
	return testenv.TarFiles(t, rc)
}

// rootListing lists the container's root filesystem (this filesystem only)
// with each entry's type, mode, owner, size and mtime, into /out/<name>.
// The kaniko dir's own times are left out: kiln works in it, as Kaniko does.
// It waits for the removers a finished build leaves its private dirs to
// (argv[0] kiln-remover; the pattern does not match the grep itself).
func rootListing(name string) string {
	return `while grep -qs '^kiln-[r]emover' /proc/[0-9]*/cmdline; do sleep 0.1; done; ` +
		`find / -xdev ! -path '/out/*' ! -path /out | sort | while read -r p; do ` +
		`case "$p" in /kaniko|/kaniko/.docker|/kaniko/buildkit) stat -c '%n %F %a %u:%g' "$p";; *) stat -c '%n %F %a %u:%g %s %Y' "$p";; esac; done > /out/` + name
}

// TestKanikoModelRunSeesTheContainer runs the GitLab job shape as root with
// no security options: RUN sees the container's /proc, /dev and /sys, cannot
// read the registry credentials the job wrote nor replace kiln's files, and
// after a failing build and its retry the container's root holds exactly
// what it held before.
func TestKanikoModelRunSeesTheContainer(t *testing.T) {
	img := loadImage(t, "kiln-debug.tar")
	const user, password = "ci-user", "ci-password-never-in-run"
	reg := testenv.StartRegistry(t, testenv.WithBasicAuth(user, password))
	testenv.SeedMirror(t, reg)
	project := testenv.ReadableTempDir(t)
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(project, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Dockerfile", "FROM busybox\n"+
		"RUN grep -q '^Pid:' /proc/self/status && echo written > /dev/null && head -c 16 /dev/urandom | wc -c > /urandom-bytes && ls /sys | grep -q . && echo ok > /proc-dev-sys\n"+
		"RUN (cat /kaniko/.docker/config.json && echo readable || echo unreadable) > /credentials 2>/dev/null\n"+
		"RUN echo evil > /kaniko/executor.new && mv /kaniko/executor.new /kaniko/executor && echo evil > /kaniko/added && rm /kaniko/ssl/certs/ca-certificates.crt\n"+
		"COPY app.txt /app.txt\n")
	write("failing.Dockerfile", "FROM busybox\nRUN echo half > /half && exit 3\n")
	write("app.txt", "the app\n")
	out := testenv.ReadableTempDir(t)
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}

	script := strings.Join([]string{
		`set -e`,
		`mkdir -p /kaniko/.docker`,
		`echo "{\"auths\":{\"${CI_REGISTRY}\":{\"auth\":\"$(printf "%s:%s" "${CI_REGISTRY_USER}" "${CI_REGISTRY_PASSWORD}" | base64 | tr -d '\n')\"}}}" > /kaniko/.docker/config.json`,
		rootListing("before"),
		`set +e`,
		`/kaniko/executor --context /project --dockerfile /project/failing.Dockerfile --destination "${CI_REGISTRY}/model/app:failed" $KANIKO_ARGS`,
		`echo "failed-with=$?"`,
		`set -e`,
		rootListing("after-failure"),
		// The layer cache is exported after RUN steps, while the job's
		// config.json is off the filesystem.
		`/kaniko/executor --context /project --destination "${CI_REGISTRY}/model/app:1" --cache=true --cache-repo "${CI_REGISTRY}/model/cache" $KANIKO_ARGS`,
		rootListing("after-success"),
	}, "\n")
	args := []string{"--network", "host", "--entrypoint", "",
		"-e", "CI_REGISTRY=" + reg.Host,
		"-e", "CI_REGISTRY_USER=" + user,
		"-e", "CI_REGISTRY_PASSWORD=" + password,
		"-e", "KANIKO_ARGS=--registry-mirror " + reg.Host + " --insecure-registry " + reg.Host,
		"-v", project + ":/project:ro",
		"-v", out + ":/out",
		img, "sh", "-c", script}
	log := dockerRun(t, args...)
	if !strings.Contains(log, "failed-with=3") {
		t.Errorf("the failing RUN's exit code 3 is not the executor's:\n%s", log)
	}
	if tags := reg.Tags("model/app"); len(tags) != 1 {
		t.Errorf("tags %v, want only the successful build's", tags)
	}
	if tags := reg.Tags("model/cache"); len(tags) == 0 {
		t.Errorf("no layer cache was pushed to the registry that needs the job's credentials")
	}
	files := imageFiles(t, reg, "model/app:1")
	for name, want := range map[string]string{
		"proc-dev-sys":  "ok\n",
		"urandom-bytes": "16\n",
		"credentials":   "unreadable\n",
		"app.txt":       "the app\n",
	} {
		if got := strings.TrimLeft(files[name], " "); got != want {
			t.Errorf("/%s = %q, want %q", name, files[name], want)
		}
	}
	if strings.Contains(log, password) {
		t.Errorf("the registry password reached the log")
	}
	before := readFile(t, filepath.Join(out, "before"))
	for _, name := range []string{"after-failure", "after-success"} {
		if after := readFile(t, filepath.Join(out, name)); after != before {
			t.Errorf("the container's root changed (%s):\n%s\n%s", name, lineDiff(before, after), log)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lineDiff lists the lines only one side has.
func lineDiff(a, b string) string {
	inA, inB := map[string]bool{}, map[string]bool{}
	for l := range strings.SplitSeq(a, "\n") {
		inA[l] = true
	}
	for l := range strings.SplitSeq(b, "\n") {
		inB[l] = true
	}
	var out []string
	for l := range inA {
		if !inB[l] {
			out = append(out, "- "+l)
		}
	}
	for l := range inB {
		if !inA[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// TestKanikoModelMatchesRootMode: a multi-stage build whose stages run in
// parallel gives, with --reproducible, the digest a rootful daemon gives.
func TestKanikoModelMatchesRootMode(t *testing.T) {
	testenv.RequireRoot(t)
	img := loadImage(t, "kiln.tar")
	reg := testenv.StartRegistry(t)
	testenv.SeedMirror(t, reg)
	project := testenv.ReadableTempDir(t)
	dockerfile := "FROM busybox AS one\nRUN mkdir /out && echo one > /out/one && chmod 640 /out/one && ln -s one /out/link\n" +
		"FROM busybox AS two\nRUN mkdir -p /out/deep/er && echo two > /out/deep/er/two && ln /out/deep/er/two /out/hard\n" +
		"FROM busybox\nCOPY --from=one /out /from-one\nCOPY --from=two /out /from-two\nRUN rm /bin/ls && echo done > /done\n"
	if err := os.WriteFile(filepath.Join(project, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	out := testenv.ReadableTempDir(t)
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	common := []string{"--registry-mirror", reg.Host, "--insecure-registry", reg.Host, "--reproducible"}

	dockerRun(t, append([]string{"--network", "host", "-v", project + ":/workspace:ro", "-v", out + ":/results", img},
		append(common, "--destination", reg.Ref("model/parallel:embedded"), "--digest-file", "/results/embedded")...)...)

	bin := filepath.Join(testenv.RepoRoot(t), "bin", "executor")
	cmd := exec.Command(bin, append(common, "--context", project, "--destination", reg.Ref("model/parallel:rootful"),
		"--digest-file", filepath.Join(out, "rootful"), "--kaniko-dir", t.TempDir(), "--buildkit-mode", "rootful")...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rootful build: %v\n%s", err, b)
	}
	embedded, rootful := readFile(t, filepath.Join(out, "embedded")), readFile(t, filepath.Join(out, "rootful"))
	if embedded != rootful {
		t.Errorf("embedded digest %s, rootful %s", embedded, rootful)
	}
}

// TestKanikoModelBadInput: a base image holding a device node, without
// CAP_MKNOD, and a full state volume fail with one line naming the cause,
// push nothing, and leave the container's root as it was.
func TestKanikoModelBadInput(t *testing.T) {
	img := loadImage(t, "kiln-debug.tar")
	reg := testenv.StartRegistry(t)
	testenv.SeedMirror(t, reg)
	withDevice, err := mutate.AppendLayers(testenv.BusyboxImage(t), deviceLayer(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Seed("library/devices:latest", withDevice); err != nil {
		t.Fatal(err)
	}
	project := testenv.ReadableTempDir(t)
	for name, content := range map[string]string{
		"devices.Dockerfile": "FROM devices\nRUN true\n",
		"big.Dockerfile":     "FROM busybox\nRUN dd if=/dev/zero of=/big bs=1M count=64\n",
	} {
		if err := os.WriteFile(filepath.Join(project, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name, dockerfile string
		docker           []string
		want             string
	}{
		{"device node without MKNOD", "devices.Dockerfile", crioStyle, "CAP_MKNOD"},
		{"full state volume", "big.Dockerfile", []string{"--mount", "type=tmpfs,destination=/kaniko/buildkit,tmpfs-size=16m"}, "no space left on device"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := testenv.ReadableTempDir(t)
			if err := os.Chmod(out, 0o777); err != nil {
				t.Fatal(err)
			}
			repo := "model/bad-" + strings.ToLower(strings.ReplaceAll(tc.name, " ", "-"))
			script := rootListing("before") + "\n" +
				`/kaniko/executor --context /project --dockerfile /project/` + tc.dockerfile + ` --registry-mirror ` + reg.Host + ` --insecure-registry ` + reg.Host + ` --destination ` + reg.Ref(repo+":1") + ` 2>/out/stderr; echo "exit=$?"` + "\n" +
				rootListing("after")
			args := append(append([]string{"--network", "host", "--entrypoint", ""}, tc.docker...),
				"-v", project+":/project:ro", "-v", out+":/out", img, "sh", "-c", script)
			log := dockerRun(t, args...)
			if !strings.Contains(log, "exit=1") {
				t.Errorf("want exit code 1:\n%s", log)
			}
			var errLines []string
			for l := range strings.SplitSeq(readFile(t, filepath.Join(out, "stderr")), "\n") {
				if strings.HasPrefix(l, "Error:") {
					errLines = append(errLines, l)
				}
			}
			t.Logf("%s: %s", tc.name, errLines)
			if len(errLines) != 1 || !strings.Contains(errLines[0], tc.want) {
				t.Errorf("want one error line naming %q, got %q\n%s", tc.want, errLines, log)
			}
			if tags := reg.Tags(repo); len(tags) != 0 {
				t.Errorf("pushed %v", tags)
			}
			if before, after := readFile(t, filepath.Join(out, "before")), readFile(t, filepath.Join(out, "after")); before != after {
				t.Errorf("the container's root changed:\n%s", lineDiff(before, after))
			}
		})
	}
}

// deviceLayer is a layer holding a character device node (/lib/dev-null).
func deviceLayer(t *testing.T) v1.Layer {
	t.Helper()
	var buf strings.Builder
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "lib/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "lib/dev-null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.String()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return layer
}
