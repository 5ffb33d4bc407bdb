package e2e

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/kilnbuild/kiln/internal/testenv"
)

// baseDockerfile builds FROM base and leaves a marker, so the pushed image
// proves both the pull and the build.
func baseDockerfile(t *testing.T, base, marker string) string {
	t.Helper()
	return writeContext(t, "FROM "+base+"\nRUN echo "+marker+" > /marker\n")
}

// assertMarker checks the pushed image carries the RUN's marker.
func assertMarker(t *testing.T, reg *testenv.Registry, dest, marker string) {
	t.Helper()
	img := pulledOverAnyScheme(t, reg, dest)
	if got := rootFile(t, img, "marker"); got != marker+"\n" {
		t.Errorf("%s: /marker = %q, want %q", dest, got, marker+"\n")
	}
}

// pulledOverAnyScheme pulls ref, over plain HTTP when reg serves it even
// where go-containerregistry would insist on HTTPS.
func pulledOverAnyScheme(t *testing.T, reg *testenv.Registry, ref string) v1.Image {
	t.Helper()
	parsed, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(parsed, reg.RemoteOptions()...)
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	return img
}

// buildsWithEachFlagSet builds FROM base and pushes to reg once per flag
// set, in both modes, each build checked by its marker.
func buildsWithEachFlagSet(t *testing.T, reg *testenv.Registry, base, group string, flagSets map[string][]string) {
	t.Helper()
	forEachMode(t, func(t *testing.T, m mode) {
		for name, flags := range flagSets {
			t.Run(name, func(t *testing.T) {
				marker := name + "-" + m.name
				dest := reg.Ref("e2e/" + group + "/" + m.name + "/" + name + ":v1")
				args := append([]string{"--context", baseDockerfile(t, base, marker), "--destination", dest}, flags...)
				m.run(t, m.stateDir(t), args).mustSucceed(t)
				assertMarker(t, reg, dest, marker)
			})
		}
	})
}

// served reports whether reg answered method on a path matching prefix
// with status.
func served(reg *testenv.Registry, method, prefix string, status int) bool {
	return slices.ContainsFunc(reg.Requests(), func(r testenv.Request) bool {
		return r.Method == method && strings.HasPrefix(r.Path, prefix) && r.Status == status
	})
}

// assertSecretAbsent scans the pushed image's manifest, config and
// uncompressed layers for secret.
func assertSecretAbsent(t *testing.T, reg *testenv.Registry, dest, secret string) {
	t.Helper()
	img, _ := pulledImage(t, reg, dest)
	manifest, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(manifest, []byte(secret)) {
		t.Errorf("%s: the image manifest holds the secret", dest)
	}
	assertBlobsFree(t, img, dest, secret)
}

// TestRegistryMTLS: the base image is pulled and the result pushed through
// a registry that requires a client certificate.
func TestRegistryMTLS(t *testing.T) {
	t.Parallel()
	reg := testenv.StartRegistry(t, testenv.WithMTLS())
	base := testenv.PushBase(t, reg, "base/busybox:1", testenv.BusyboxImage(t))
	trust := []string{"--registry-certificate", reg.Host + "=" + reg.CAFile}
	clientCert := []string{"--registry-client-cert", reg.Host + "=" + reg.ClientCert.CertFile + "," + reg.ClientCert.KeyFile}

	forEachMode(t, func(t *testing.T, m mode) {
		marker := "mtls-" + m.name
		dest := reg.Ref("e2e/mtls/" + m.name + ":v1")
		args := append([]string{"--context", baseDockerfile(t, base, marker), "--destination", dest}, append(trust, clientCert...)...)
		m.run(t, m.stateDir(t), args).mustSucceed(t)
		assertMarker(t, reg, dest, marker)
		if !served(reg, http.MethodGet, "/v2/base/busybox/blobs/", http.StatusOK) {
			t.Errorf("the base image's blobs were not pulled through the mTLS registry")
		}
	})

	// A key that does not match the certificate, and a CA file that holds
	// no certificate: one line naming the flag, nothing pushed.
	other, err := reg.CA.IssueClient("other")
	if err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(testenv.ReadableTempDir(t), "ca.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	failures := []struct {
		name string
		args []string
		want string
	}{
		{"wrong-client-key", append(slices.Clone(trust), "--registry-client-cert", reg.Host+"="+reg.ClientCert.CertFile+","+other.KeyFile), "--registry-client-cert " + reg.Host},
		{"bad-ca-file", append([]string{"--registry-certificate", reg.Host + "=" + garbage}, clientCert...), "--registry-certificate " + reg.Host},
		{"no-client-cert", trust, reg.Host},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			testenv.RequireRoot(t)
			m, repo := mode{name: "root"}, "e2e/mtls/"+f.name
			args := append([]string{"--context", baseDockerfile(t, base, "never"), "--destination", reg.Ref(repo + ":v1")}, f.args...)
			r := m.run(t, m.stateDir(t), args)
			r.assertOneLineFailure(t, f.want)
			assertNothingPushed(t, reg, repo)
		})
	}
}

// TestRegistrySkipTLSVerify: a registry whose certificate nobody trusts is
// usable with --skip-tls-verify or --skip-tls-verify-registry, and refused
// without.
func TestRegistrySkipTLSVerify(t *testing.T) {
	t.Parallel()
	reg := testenv.StartRegistry(t, testenv.WithTLS())
	base := testenv.PushBase(t, reg, "base/busybox:1", testenv.BusyboxImage(t))

	buildsWithEachFlagSet(t, reg, base, "skip-tls", map[string][]string{
		"skip-tls-verify":          {"--skip-tls-verify"},
		"skip-tls-verify-registry": {"--skip-tls-verify-registry", reg.Host},
	})

	t.Run("verified", func(t *testing.T) {
		t.Parallel()
		testenv.RequireRoot(t)
		m, repo := mode{name: "root"}, "e2e/skip-tls/verified"
		r := m.run(t, m.stateDir(t), []string{"--context", baseDockerfile(t, base, "never"), "--destination", reg.Ref(repo + ":v1")})
		r.assertOneLineFailure(t, "certificate")
		assertNothingPushed(t, reg, repo)
	})
}

// TestRegistryPlainHTTP: a plain-HTTP registry on a loopback address that
// go-containerregistry does not treat as local (127.0.0.2) needs
// --insecure-registry, or --insecure for the push and --insecure-pull for
// the base image.
func TestRegistryPlainHTTP(t *testing.T) {
	t.Parallel()
	reg := testenv.StartRegistry(t, testenv.WithAddr("127.0.0.2:0"))
	base := testenv.PushBase(t, reg, "base/busybox:1", testenv.BusyboxImage(t))

	buildsWithEachFlagSet(t, reg, base, "http", map[string][]string{
		"insecure-registry": {"--insecure-registry", reg.Host},
		"insecure-and-pull": {"--insecure", "--insecure-pull"},
	})

	for name, flags := range map[string][]string{"no-flags": nil, "insecure-push-only": {"--insecure"}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testenv.RequireRoot(t)
			m, repo := mode{name: "root"}, "e2e/http/"+name
			args := append([]string{"--context", baseDockerfile(t, base, "never"), "--destination", reg.Ref(repo + ":v1")}, flags...)
			r := m.run(t, m.stateDir(t), args)
			r.assertOneLineFailure(t, reg.Host)
			assertNothingPushed(t, reg, repo)
		})
	}
}
