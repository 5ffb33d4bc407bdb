package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// Values no build step, log line or blob would hold by chance.
const (
	fileSecret = "kiln-file-secret-7f3a9c51"
	envSecret  = "kiln-env-secret-2b8d4106"
)

// TestBuildSecrets: the maintained fork's --secret from a file and from a
// variable reaches RUN --mount=type=secret, and neither value reaches the
// image, its history, the registry cache or the executor's output at any
// verbosity.
func TestBuildSecrets(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	ctx := writeContext(t, "FROM busybox\n"+
		"RUN --mount=type=secret,id=tok --mount=type=secret,id=envtok,required=true "+
		"cat /run/secrets/tok /run/secrets/envtok | sha256sum | cut -d' ' -f1 > /seen && echo secrets were mounted\n")
	sum := sha256.Sum256([]byte(fileSecret + envSecret))
	wantSeen := hex.EncodeToString(sum[:]) + "\n"

	forEachMode(t, func(t *testing.T, m mode) {
		secretFile := filepath.Join(m.dir(t), "token")
		if err := os.WriteFile(secretFile, []byte(fileSecret), 0o644); err != nil {
			t.Fatal(err)
		}
		verbosities := []string{"trace"}
		if !m.rootless {
			verbosities = append(verbosities, "debug", "info")
		}
		for _, verbosity := range verbosities {
			repo := "e2e/secrets/" + m.name + "-" + verbosity
			dest := reg.Ref(repo + ":v1")
			args := append(mirrorArgs(ctx, reg, dest), "--verbosity", verbosity,
				"--secret", "id=tok,src="+secretFile, "--secret", "id=envtok,env=DEPLOY_TOKEN")
			if verbosity == "trace" {
				args = append(args, "--cache=true", "--cache-repo", reg.Ref(repo+"-cache"))
			}
			r := m.run(t, m.stateDir(t), args, "DEPLOY_TOKEN="+envSecret)
			r.mustSucceed(t)
			if !strings.Contains(r.stdout+r.stderr, "secrets were mounted") {
				t.Errorf("%s: the RUN's output is missing", verbosity)
			}
			img, _ := pulledImage(t, reg, dest)
			if got := rootFile(t, img, "seen"); got != wantSeen {
				t.Errorf("%s: RUN saw secrets hashing to %q, want %q", verbosity, got, wantSeen)
			}
			for _, secret := range []string{fileSecret, envSecret} {
				for _, form := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret))} {
					if strings.Contains(r.stdout+r.stderr, form) {
						t.Errorf("%s: the executor's output holds a secret", verbosity)
					}
				}
				assertSecretAbsent(t, reg, dest, secret)
				if verbosity == "trace" {
					assertRepositoryFree(t, reg, repo+"-cache", secret)
				}
			}
		}
	})
}

// TestBuildSecretErrors: a secret that cannot be read fails before anything
// starts, on one line that names the secret and not its value.
func TestBuildSecretErrors(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	ctx := writeContext(t, "FROM busybox\nRUN --mount=type=secret,id=tok true\n")
	m := mode{name: "root"}
	testenv.RequireRoot(t)
	for _, tc := range []struct{ secret, want string }{
		{"id=tok,src=/nonexistent/token", "--secret id=tok: cannot read /nonexistent/token"},
		{"id=tok,env=KILN_UNSET_TOKEN", "--secret id=tok: the variable KILN_UNSET_TOKEN is not set"},
		{"src=/etc/hostname", "--secret src=/etc/hostname: no id"},
	} {
		dest := reg.Ref("e2e/secret-errors/app:v1")
		r := m.run(t, m.stateDir(t), append(mirrorArgs(ctx, reg, dest), "--secret", tc.secret))
		r.assertOneLineFailure(t, tc.want)
		if len(r.seen) > 0 {
			t.Errorf("%s: processes started before the error: %v", tc.secret, r.seen)
		}
		if tags := reg.Tags("e2e/secret-errors/app"); len(tags) > 0 {
			t.Errorf("%s: pushed %v", tc.secret, tags)
		}
	}
}

// assertRepositoryFree reads every tag of repo (manifests, configs and
// layers, indexes followed) and fails when any byte sequence equals secret.
func assertRepositoryFree(t *testing.T, reg *testenv.Registry, repo, secret string) {
	t.Helper()
	tags := reg.Tags(repo)
	if len(tags) == 0 {
		t.Fatalf("nothing was pushed to %s", repo)
	}
	for _, tag := range tags {
		ref, err := name.ParseReference(reg.Ref(repo + ":" + tag))
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(ref, reg.RemoteOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(desc.Manifest, []byte(secret)) {
			t.Errorf("%s:%s: the manifest holds the secret", repo, tag)
		}
		var images []v1.Image
		if desc.MediaType.IsIndex() {
			idx, err := desc.ImageIndex()
			if err != nil {
				t.Fatal(err)
			}
			manifest, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range manifest.Manifests {
				if img, err := idx.Image(d.Digest); err == nil {
					images = append(images, img)
				}
			}
		} else if img, err := desc.Image(); err == nil {
			images = append(images, img)
		}
		for _, img := range images {
			assertBlobsFree(t, img, repo+":"+tag, secret)
		}
	}
}

func assertBlobsFree(t *testing.T, img v1.Image, what, secret string) {
	t.Helper()
	config, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(config, []byte(secret)) {
		t.Errorf("%s: the config (history included) holds the secret", what)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, layer := range layers {
		if bytes.Contains(layerContent(t, layer), []byte(secret)) {
			t.Errorf("%s: layer %d holds the secret", what, i)
		}
	}
}

// layerContent is the layer's uncompressed bytes.
func layerContent(t *testing.T, layer v1.Layer) []byte {
	t.Helper()
	rc, err := layer.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	content, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return content
}
