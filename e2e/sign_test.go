package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnbuild/kiln/internal/testenv"
)

const cosignPassword = "kiln-cosign-pw-5d1e"

// cosignRun runs the real cosign CLI offline against the plain-HTTP test
// registry and returns its combined output and error.
func cosignRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(testenv.Cosign(t), args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "TUF_ROOT="+filepath.Join(home, "tuf"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestSignedBuild: Kimia's --sign signs every destination with the cosign
// key; the real cosign CLI verifies each offline, a different key does not,
// and the digest file and BUILDER_OUTPUT are what an unsigned build writes.
func TestSignedBuild(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	reg := mirrorRegistry(t)
	key, pub := testenv.CosignKeyPair(t, cosignPassword)
	_, otherPub := testenv.CosignKeyPair(t, "another-password")
	ctx := writeContext(t, "FROM busybox\nRUN echo signed > /signed\n")
	m := mode{name: "root"}

	out := m.dir(t)
	builderOutput := filepath.Join(out, "builder")
	if err := os.Mkdir(builderOutput, 0o755); err != nil {
		t.Fatal(err)
	}
	dest1, dest2 := reg.Ref("e2e/signed/app:v1"), reg.Ref("e2e/signed/copy:v1")
	args := append(mirrorArgs(ctx, reg, dest1), "--destination", dest2, "--reproducible",
		"--sign", "--cosign-key", key, "--digest-file", filepath.Join(out, "digest"))
	r := m.run(t, m.stateDir(t), args, "COSIGN_PASSWORD="+cosignPassword, "BUILDER_OUTPUT="+builderOutput)
	r.mustSucceed(t)
	if strings.Contains(r.stdout+r.stderr, cosignPassword) {
		t.Error("the executor's output holds the key password")
	}

	_, digest := pulledImage(t, reg, dest1)
	assertFileContent(t, filepath.Join(out, "digest"), digest.String())
	assertFileContent(t, filepath.Join(builderOutput, "images"),
		`{"name":"`+dest1+`","digest":"`+digest.String()+`"}`+"\n"+`{"name":"`+dest2+`","digest":"`+digest.String()+`"}`+"\n")
	for _, dest := range []string{dest1, dest2} {
		ref := strings.SplitN(dest, ":v1", 2)[0] + "@" + digest.String()
		if out, err := cosignRun(t, "verify", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry", ref); err != nil {
			t.Errorf("cosign verify %s: %v\n%s", ref, err, out)
		}
		if out, err := cosignRun(t, "verify", "--key", otherPub, "--insecure-ignore-tlog", "--allow-http-registry", ref); err == nil {
			t.Errorf("cosign verify with another key accepted %s:\n%s", ref, out)
		}
	}

	// The same build unsigned writes the same image: signing changes no digest.
	plain := reg.Ref("e2e/signed/plain:v1")
	r = m.run(t, m.stateDir(t), append(mirrorArgs(ctx, reg, plain), "--reproducible"))
	r.mustSucceed(t)
	if _, plainDigest := pulledImage(t, reg, plain); plainDigest != digest {
		t.Errorf("unsigned build gives %s, signed %s", plainDigest, digest)
	}
}

// TestSignErrors: a key that cannot be used, or nothing to sign, fails
// before anything starts, on one line, and nothing is pushed.
func TestSignErrors(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	reg := mirrorRegistry(t)
	key, _ := testenv.CosignKeyPair(t, cosignPassword)
	ctx := writeContext(t, "FROM busybox\nRUN true\n")
	m := mode{name: "root"}
	for _, tc := range []struct {
		name  string
		extra []string
		env   []string
		want  string
	}{
		{"wrong password", []string{"--sign", "--cosign-key", key}, []string{"COSIGN_PASSWORD=not-the-password"}, "--cosign-key " + key + ": cannot load the key with the password in COSIGN_PASSWORD"},
		{"password in another variable", []string{"--sign", "--cosign-key", key, "--cosign-password-env", "SIGNING_PW"}, []string{"COSIGN_PASSWORD=" + cosignPassword}, "with the password in SIGNING_PW"},
		{"missing key", []string{"--sign", "--cosign-key", "/nonexistent/cosign.key"}, []string{"COSIGN_PASSWORD=" + cosignPassword}, "--cosign-key /nonexistent/cosign.key: no such file or directory"},
		{"nothing to sign", []string{"--sign", "--cosign-key", key, "--no-push"}, []string{"COSIGN_PASSWORD=" + cosignPassword}, "--sign signs what is pushed, but this build pushes nothing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := reg.Ref("e2e/sign-errors/app:v1")
			r := m.run(t, m.stateDir(t), append(mirrorArgs(ctx, reg, dest), tc.extra...), tc.env...)
			r.assertOneLineFailure(t, tc.want)
			if strings.Contains(r.stderr, cosignPassword) {
				t.Error("the error shows the password")
			}
			if len(r.seen) > 0 {
				t.Errorf("processes started before the error: %v", r.seen)
			}
			if tags := reg.Tags("e2e/sign-errors/app"); len(tags) > 0 {
				t.Errorf("pushed %v", tags)
			}
		})
	}
}
