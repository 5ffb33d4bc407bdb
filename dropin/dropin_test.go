// Package dropin proves kiln's images drop into the places Kaniko's ran: a
// Kimia-style rootless pod, a Kaniko-style root pod, the GitLab Kaniko job and
// the Tekton kaniko task, each run unchanged in the machine's Docker engine,
// and that a hardened pod fails fast with the fix. The images come from
// `make image` (out/kiln.tar, out/kiln-debug.tar).
package dropin

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// Docker options per security mode, each needed for the reason given
// (docs/kubernetes.md has the Kubernetes equivalents).
var (
	// Kimia's documented pod: non-root, every capability dropped but the two
	// newuidmap/newgidmap use, and no seccomp/AppArmor filtering of the
	// unshare and mount calls rootless BuildKit makes.
	kimiaStyle = []string{
		"--user", "1000",
		"--cap-drop", "ALL", "--cap-add", "SETUID", "--cap-add", "SETGID",
		"--security-opt", "seccomp=unconfined",
		"--security-opt", "apparmor=unconfined",
	}
	// Kaniko's pod: root with the runtime's defaults and no security
	// options at all (default seccomp, AppArmor and capabilities).
	kanikoStyle = []string{}
	// The same under CRI-O's (OpenShift's) smaller default capability set.
	crioStyle = []string{
		"--cap-drop", "SYS_CHROOT", "--cap-drop", "MKNOD", "--cap-drop", "NET_RAW",
		"--cap-drop", "SETFCAP", "--cap-drop", "AUDIT_WRITE",
	}
	// The runtime's defaults for a non-root pod: Docker's seccomp profile.
	hardened = []string{"--user", "1000"}
)

const dockerfile = "FROM busybox\nRUN echo built-by-kiln > /proof\n"

var digestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func TestKimiaStylePodBuildsAndPushes(t *testing.T) {
	buildAndPush(t, kimiaStyle, "dropin/kimia")
}

func TestKanikoStylePodBuilds(t *testing.T) {
	buildAndPush(t, kanikoStyle, "dropin/kaniko")
}

func TestCRIOCapabilitiesPodBuilds(t *testing.T) {
	buildAndPush(t, crioStyle, "dropin/crio")
}

// buildAndPush runs the executor image with the security options and a
// Kaniko-style argument list, and checks repo:1 was pushed.
func buildAndPush(t *testing.T, security []string, repo string) {
	t.Helper()
	img := loadImage(t, "kiln.tar")
	reg := testenv.StartRegistry(t)
	testenv.SeedMirror(t, reg)
	ctxDir := buildContext(t)

	args := append(append([]string{"--network", "host"}, security...),
		"-v", ctxDir+":/workspace:ro", img,
		"--registry-mirror", reg.Host, "--insecure-registry", reg.Host,
		"--destination", reg.Ref(repo+":1"))
	out := dockerRun(t, args...)
	assertPushed(t, reg, repo, "1", out)
}

func TestHardenedPodFailsFastNamingTheFix(t *testing.T) {
	img := loadImage(t, "kiln.tar")
	reg := testenv.StartRegistry(t)
	testenv.SeedMirror(t, reg)
	ctxDir := buildContext(t)

	args := append(append([]string{"--network", "host"}, hardened...),
		"-v", ctxDir+":/workspace:ro", img,
		"--registry-mirror", reg.Host, "--insecure-registry", reg.Host,
		"--destination", reg.Ref("dropin/hardened:1"))
	start := time.Now()
	out, err := docker(t, append([]string{"run", "--rm"}, args...)...)
	took := time.Since(start)
	if err == nil {
		t.Fatalf("the build must fail under Docker's default seccomp profile; output:\n%s", out)
	}
	for _, want := range []string{
		"user namespace",                          // the blocked operation
		"seccompProfile: {type: Unconfined}",      // the Kubernetes fix
		"appArmorProfile: {type: Unconfined}",     // the other profile that blocks it
		"BuildKit cannot start in this container", // before any daemon ran
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not mention %q:\n%s", want, out)
		}
	}
	if took > 30*time.Second {
		t.Errorf("failing took %s; the preflight must fail before a daemon starts", took)
	}
	if tags := reg.Tags("dropin/hardened"); len(tags) != 0 {
		t.Errorf("nothing may be pushed, found tags %v", tags)
	}
}

// TestGitLabKanikoTemplateJob runs the job GitLab's Kaniko template
// generates, unchanged: entrypoint "", a busybox sh script that writes the
// docker config from the CI_REGISTRY* variables, then /kaniko/executor, in a
// runner's default container: root, no security options.
func TestGitLabKanikoTemplateJob(t *testing.T) {
	img := loadImage(t, "kiln-debug.tar")
	const user, password = "gitlab-ci-token", "s3cr3t-job-token"
	reg := testenv.StartRegistry(t, testenv.WithBasicAuth(user, password))
	testenv.SeedMirror(t, reg)
	project := buildContext(t)

	script := strings.Join([]string{
		`mkdir -p /kaniko/.docker`,
		`echo "{\"auths\":{\"${CI_REGISTRY}\":{\"auth\":\"$(printf "%s:%s" "${CI_REGISTRY_USER}" "${CI_REGISTRY_PASSWORD}" | base64 | tr -d '\n')\"}}}" > /kaniko/.docker/config.json`,
		`/kaniko/executor --context "${CI_PROJECT_DIR}" --dockerfile "${CI_PROJECT_DIR}/Dockerfile" --destination "${CI_REGISTRY_IMAGE}:${VERSION}" $KANIKO_ARGS`,
	}, "\n")
	args := append(append([]string{"--network", "host"}, kanikoStyle...),
		"--entrypoint", "",
		"-e", "CI_REGISTRY="+reg.Host,
		"-e", "CI_REGISTRY_USER="+user,
		"-e", "CI_REGISTRY_PASSWORD="+password,
		"-e", "CI_REGISTRY_IMAGE="+reg.Ref("group/project"),
		"-e", "CI_PROJECT_DIR=/builds/group/project",
		"-e", "VERSION=latest",
		"-e", "KANIKO_ARGS=--registry-mirror "+reg.Host+" --insecure-registry "+reg.Host,
		"-v", project+":/builds/group/project:ro",
		img, "sh", "-c", script)
	out := dockerRun(t, args...)
	assertPushed(t, reg, "group/project", "latest", out)
	if strings.Contains(out, password) {
		t.Errorf("the registry password reached the job log:\n%s", out)
	}
}

// TestTektonKanikoTaskStep runs the catalog task's step unchanged: args
// only, the dockerconfig workspace mounted read-only at /kaniko/.docker, and
// --digest-file pointing at the task result, which must hold the digest.
func TestTektonKanikoTaskStep(t *testing.T) {
	img := loadImage(t, "kiln.tar")
	const user, password = "tekton", "tekton-pass"
	reg := testenv.StartRegistry(t, testenv.WithBasicAuth(user, password))
	testenv.SeedMirror(t, reg)
	source := buildContext(t)
	dockerConfig := testenv.DockerConfig(t, map[string]string{reg.Host: user + ":" + password})
	results := testenv.ReadableTempDir(t)
	if err := os.Chmod(results, 0o777); err != nil {
		t.Fatal(err)
	}

	// The task's securityContext is runAsUser: 0 and nothing else.
	args := append(append([]string{"--network", "host", "--user", "0"}, kanikoStyle...),
		"-w", "/workspace/source",
		"-v", source+":/workspace/source:ro",
		"-v", dockerConfig+":/kaniko/.docker:ro",
		"-v", results+":/tekton/results",
		img,
		"--registry-mirror="+reg.Host, "--insecure-registry="+reg.Host, // $(params.EXTRA_ARGS)
		"--dockerfile=./Dockerfile",
		"--context=/workspace/source/./",
		"--destination="+reg.Ref("tekton/app"),
		"--digest-file=/tekton/results/IMAGE_DIGEST")
	out := dockerRun(t, args...)
	assertPushed(t, reg, "tekton/app", "latest", out)
	digest, err := os.ReadFile(filepath.Join(results, "IMAGE_DIGEST"))
	if err != nil {
		t.Fatalf("the IMAGE_DIGEST result was not written: %v\n%s", err, out)
	}
	if !digestPattern.Match(digest) {
		t.Fatalf("IMAGE_DIGEST = %q, want exactly sha256:<64 hex> (no newline, as Kaniko writes it)", digest)
	}
	pushed, err := reg.Pull(t, "tekton/app:latest").Digest()
	if err != nil {
		t.Fatal(err)
	}
	if string(digest) != pushed.String() {
		t.Errorf("IMAGE_DIGEST %s is not the pushed digest %s", digest, pushed)
	}
}

// TestDebugImageHasKanikoLayout checks what scripts and runners rely on.
func TestDebugImageHasKanikoLayout(t *testing.T) {
	img := loadImage(t, "kiln-debug.tar")
	script := `set -e
test -x /kaniko/executor && test -x /kaniko/kiln-runc && test -x /kaniko/buildkitd && test -x /kaniko/rootlesskit
test -x /kaniko/docker-credential-ecr-login && test -x /kaniko/docker-credential-gcr && test -x /kaniko/docker-credential-acr-env
test "$DOCKER_CREDENTIAL_GCR_CONFIG" = /kaniko/.config/gcloud/docker_credential_gcr_config.json && grep -q env "$DOCKER_CREDENTIAL_GCR_CONFIG"
test -d /kaniko/.docker && test -f /kaniko/ssl/certs/ca-certificates.crt
test "$(stat -c %a /kaniko)" = 777
test "$DOCKER_CONFIG" = /kaniko/.docker/ && test "$SSL_CERT_DIR" = /kaniko/ssl/certs && test "$HOME" = /root
test "$(pwd)" = /workspace
test "$(readlink /bin/sh)" = /busybox/sh
echo "$PATH" | grep -q /busybox
grep -q '^kiln:100000:65536$' /etc/subuid && grep -q '^kiln:100000:65536$' /etc/subgid
echo layout-ok`
	out := dockerRun(t, "--entrypoint", "", img, "sh", "-c", script)
	if !strings.Contains(out, "layout-ok") {
		t.Fatalf("layout check failed:\n%s", out)
	}
}

// TestImagesAreReproducible builds both images twice from the same checkout
// and compares digests.
func TestImagesAreReproducible(t *testing.T) {
	testenv.RequireRoot(t)
	root := testenv.RepoRoot(t)
	bin := filepath.Join(root, "out", "image-bin")
	if _, err := os.Stat(filepath.Join(bin, "executor")); err != nil {
		t.Fatalf("static binaries missing from %s: run make image", bin)
	}
	var digests [2]string
	for i := range digests {
		out := filepath.Join(t.TempDir(), "out")
		cmd := exec.Command(filepath.Join(root, "hack", "image.sh"), bin)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "OUT="+out, "SOURCE_DATE_EPOCH=1700000000")
		if log, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("hack/image.sh: %v\n%s", err, log)
		}
		for _, name := range []string{"kiln.digest", "kiln-debug.digest"} {
			d, err := os.ReadFile(filepath.Join(out, name))
			if err != nil {
				t.Fatal(err)
			}
			if !digestPattern.Match(d) {
				t.Fatalf("%s = %q", name, d)
			}
			digests[i] += string(d) + " "
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds of the same checkout differ: %s vs %s", digests[0], digests[1])
	}
}

// loadImage docker-loads out/<tarball> and returns its tag.
func loadImage(t *testing.T, tarball string) string { return testenv.LoadImage(t, tarball) }

// buildContext writes the test Dockerfile into a directory every user can read.
func buildContext(t *testing.T) string {
	t.Helper()
	dir := testenv.ReadableTempDir(t)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// dockerRun runs `docker run --rm args...` and fails the test on error.
func dockerRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := docker(t, append([]string{"run", "--rm"}, args...)...)
	if err != nil {
		t.Fatalf("docker run %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func docker(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	return string(out), err
}

// assertPushed checks the registry holds repo:tag and the log says so.
func assertPushed(t *testing.T, reg *testenv.Registry, repo, tag, log string) {
	t.Helper()
	for _, got := range reg.Tags(repo) {
		if got == tag {
			if !strings.Contains(log, "Pushed") {
				t.Errorf("pushed, but the log has no Kaniko-style Pushed line:\n%s", log)
			}
			return
		}
	}
	t.Fatalf("%s:%s was not pushed (tags %v); output:\n%s", repo, tag, reg.Tags(repo), fmt.Sprint(log))
}

// TestCloudCredentialHelperBinaries: config.json's credHelpers name
// ecr-login, gcr and acr-env, as EKS, GKE and AKS Jobs write them, with the
// in-process helpers turned off (--credential-helpers=), so the helper
// binaries in kiln's image answer: each gets a token from its local fake
// (ECR's API, Google's token endpoint, an Entra authority and the
// registry's exchange), and the build pulls and pushes with it.
func TestCloudCredentialHelperBinaries(t *testing.T) {
	img := loadImage(t, "kiln.tar")
	creds := testenv.ReadableTempDir(t)
	copyInto := func(src, name string) string {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(creds, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		return "/creds/" + name
	}

	aws := testenv.AWSCredentials{AccessKeyID: "AKIDDROPIN", SecretAccessKey: "dropin-aws-secret"}
	ecrAPI := testenv.StartFakeECR(t, aws, "dropin-ecr-token")
	google := testenv.StartFakeGoogleTokenEndpoint(t, "ya29.dropin-google-token")
	entra := testenv.StartFakeEntraAuthority(t, "dropin-entra-secret", "dropin-entra-token")

	type cloud struct {
		helper, hostname, token string
		reg                     *testenv.Registry
	}
	clouds := []*cloud{
		{helper: "ecr-login", hostname: "123456789012.dkr.ecr.us-east-1.amazonaws.com", token: ecrAPI.Password},
		{helper: "gcr", hostname: "us-docker.pkg.dev", token: google.AccessToken},
		{helper: "acr-env", hostname: "kilndropin.azurecr.io", token: "dropin-acr-refresh-token"},
	}
	credHelpers := map[string]string{}
	args := []string{"--network", "host"}
	var flags []string
	var cas []*testenv.CA
	for _, c := range clouds {
		opts := []testenv.RegistryOption{testenv.WithTLS(), testenv.WithHostnames(c.hostname), testenv.WithTokenAuth(c.token)}
		switch c.helper {
		case "gcr":
			opts = append(opts, testenv.WithTokenCheck(google.Accepts))
		case "acr-env":
			opts = append(opts, testenv.WithRoute("/oauth2/exchange", testenv.ACRExchange(entra.AccessToken, c.token)))
		}
		c.reg = testenv.StartRegistry(t, opts...)
		testenv.SeedMirror(t, c.reg)
		_, port, _ := strings.Cut(c.reg.Host, ":")
		host := c.hostname + ":" + port
		credHelpers[host] = c.helper
		cas = append(cas, c.reg.CA)
		args = append(args, "--add-host", c.hostname+":127.0.0.1")
		flags = append(flags, "--registry-certificate", host+"="+copyInto(c.reg.CAFile, c.helper+"-ca.pem"))
	}
	config, _ := json.Marshal(map[string]any{"credHelpers": credHelpers})
	if err := os.WriteFile(filepath.Join(creds, "config.json"), config, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"DOCKER_CONFIG=/creds",
		"AWS_ACCESS_KEY_ID=" + aws.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + aws.SecretAccessKey,
		"AWS_ENDPOINT_URL_ECR=" + ecrAPI.URL, "AWS_EC2_METADATA_DISABLED=true", "AWS_ECR_DISABLE_CACHE=true",
		"GOOGLE_APPLICATION_CREDENTIALS=" + copyInto(google.ServiceAccountJSON(t, false), "service-account.json"),
		"AZURE_ENVIRONMENT=AZURESTACKCLOUD", "AZURE_ENVIRONMENT_FILEPATH=" + copyInto(entra.EnvironmentFile(t), "azure-environment.json"),
		"AZURE_TENANT_ID=" + entra.TenantID, "AZURE_CLIENT_ID=" + entra.ClientID, "AZURE_CLIENT_SECRET=" + entra.ClientSecret,
		"SSL_CERT_FILE=" + copyInto(testenv.CABundle(t, append(cas, entra.CA)...), "ca-bundle.pem"),
	}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	args = append(append(args, kanikoStyle...), "-v", creds+":/creds:ro")
	secrets := []string{aws.SecretAccessKey, entra.ClientSecret, entra.AccessToken}
	for _, c := range clouds {
		t.Run(c.helper, func(t *testing.T) {
			_, port, _ := strings.Cut(c.reg.Host, ":")
			host := c.hostname + ":" + port
			ctxDir := testenv.ReadableTempDir(t)
			if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM "+host+"/library/busybox\nRUN echo built-by-kiln > /proof\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			run := append(append(slices.Clone(args), "-v", ctxDir+":/workspace:ro", img,
				"--credential-helpers=", "--destination", host+"/dropin/"+c.helper+":1"), flags...)
			out := dockerRun(t, run...)
			assertPushed(t, c.reg, "dropin/"+c.helper, "1", out)
			for _, s := range append(secrets, c.token) {
				if strings.Contains(out, s) {
					t.Errorf("a credential reached the log:\n%s", out)
				}
			}
		})
	}
}
