package publish

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/kilnbuild/kiln/internal/testenv"
)

func TestAttestationIndex(t *testing.T) {
	img, err := random.Image(128, 2)
	if err != nil {
		t.Fatal(err)
	}
	statements := []Statement{{PredicateType: "https://spdx.dev/Document", Predicate: []byte(`{"spdxVersion":"SPDX-2.3"}`)}}
	platform := v1.Platform{OS: "linux", Architecture: "amd64"}
	idx, err := AttestationIndex(img, platform, "registry.example.com/team/app", statements)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := AttestationIndex(img, platform, "registry.example.com/team/app", statements)
	d1, _ := idx.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("the same image and statements gave %s and %s", d1, d2)
	}
	manifest, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()
	if len(manifest.Manifests) != 2 || manifest.Manifests[0].Digest != digest || manifest.Manifests[0].Platform.Architecture != "amd64" {
		t.Fatalf("index %+v", manifest.Manifests)
	}
	att := manifest.Manifests[1]
	if att.Annotations["vnd.docker.reference.type"] != "attestation-manifest" || att.Annotations["vnd.docker.reference.digest"] != digest.String() {
		t.Errorf("attestation descriptor %+v", att)
	}
	attImg, err := idx.Image(att.Digest)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := attImg.RawManifest()
	if !strings.Contains(string(raw), `"in-toto.io/predicate-type":"https://spdx.dev/Document"`) || !strings.Contains(string(raw), inTotoLayerMediaType) {
		t.Errorf("attestation manifest: %s", raw)
	}
	layers, _ := attImg.Layers()
	rc, _ := layers[0].Uncompressed()
	var st map[string]any
	if err := json.NewDecoder(rc).Decode(&st); err != nil {
		t.Fatal(err)
	}
	subject := st["subject"].([]any)[0].(map[string]any)
	if subject["digest"].(map[string]any)["sha256"] != digest.Hex || st["_type"] != inTotoStatementType {
		t.Errorf("statement %v", st)
	}
}

// Signing keeps the digest files' and BUILDER_OUTPUT's digest, and with an
// attestation index they name the index, which is what the tag points to.
func TestPublishAttestedAndSigned(t *testing.T) {
	dir := t.TempDir()
	keys, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("pw"), nil })
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "cosign.key")
	if err := os.WriteFile(keyFile, keys.PrivateBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) (string, bool) { return map[string]string{"PW": "pw"}[k], k == "PW" }
	signer, err := NewSigner(keyFile, "PW", env)
	if err != nil {
		t.Fatal(err)
	}
	reg := testenv.StartRegistry(t)
	h := newHarness(t, nil)
	h.cfg.Destinations = []string{reg.Ref("team/app:v1")}
	h.cfg.DigestFile = filepath.Join(dir, "digest")
	h.cfg.BuilderOutput = dir
	h.cfg.Signer = signer
	img, _ := random.Image(64, 1)
	statements := []Statement{{PredicateType: "https://spdx.dev/Document", Predicate: []byte(`{}`)}}
	idx, err := AttestationIndex(img, v1.Platform{OS: "linux", Architecture: "amd64"}, "team/app", statements)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.run(t, WithAttestations(img, statements, idx)); err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	if got, _ := os.ReadFile(h.cfg.DigestFile); string(got) != want.String() {
		t.Errorf("digest file %q, want the index %s", got, want)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "images")); !bytes.Contains(got, []byte(want.String())) {
		t.Errorf("BUILDER_OUTPUT %s lacks %s", got, want)
	}
	tags := strings.Join(reg.Tags("team/app"), " ")
	sigTag := "sha256-" + want.Hex
	for _, tag := range []string{"v1", sigTag + ".sig", sigTag + ".att"} {
		if !strings.Contains(tags, tag) {
			t.Errorf("tags %q lack %s", tags, tag)
		}
	}
	ref, err := name.ParseReference(reg.Ref("team/app:v1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Index(ref, reg.RemoteOptions()...); err != nil {
		t.Errorf("v1 is not the index: %v", err)
	}

	for _, tc := range []struct{ file, env, want string }{
		{keyFile, "NOPE", "cannot load the key with the password in NOPE"},
		{filepath.Join(dir, "missing.key"), "PW", "missing.key: no such file or directory"},
	} {
		if _, err := NewSigner(tc.file, tc.env, env); err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s/%s: %v, want one line with %q", tc.file, tc.env, err, tc.want)
		}
	}
}
