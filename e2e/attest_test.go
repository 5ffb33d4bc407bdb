package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// TestAttestedSignedBuild: Kimia's --attestation=max --sign on a Debian
// image. The tag names BuildKit's index form (image + attestation manifest
// whose statements are about the image kiln published); the SBOM lists the
// image's Debian packages; the real cosign CLI verifies the signature and
// both attestations; a second reproducible build gives the same digests,
// attestations included.
func TestAttestedSignedBuild(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	reg := mirrorRegistry(t)
	testenv.PushBase(t, reg, "library/debian:bookworm", testenv.DebianImage(t))
	key, pub := testenv.CosignKeyPair(t, cosignPassword)
	ctx := writeContext(t, "FROM debian:bookworm\nRUN echo attested > /attested\n")
	m := mode{name: "root"}

	build := func(tag string) (v1.Hash, string) {
		out := m.dir(t)
		dest := reg.Ref("e2e/attested/app:" + tag)
		args := append(mirrorArgs(ctx, reg, dest), "--reproducible", "--attestation=max",
			"--sign", "--cosign-key", key, "--digest-file", filepath.Join(out, "digest"))
		r := m.run(t, m.stateDir(t), args, "COSIGN_PASSWORD="+cosignPassword, "SOURCE_DATE_EPOCH=1700000000")
		r.mustSucceed(t)
		digest, err := os.ReadFile(filepath.Join(out, "digest"))
		if err != nil {
			t.Fatal(err)
		}
		h, err := v1.NewHash(string(digest))
		if err != nil {
			t.Fatal(err)
		}
		return h, dest
	}
	digest, dest := build("one")

	ref, err := name.ParseReference(dest)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref, reg.RemoteOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != digest || !desc.MediaType.IsIndex() {
		t.Fatalf("the tag points to %s (%s), the digest file says %s: want the attestation index", desc.Digest, desc.MediaType, digest)
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	statements := attestationStatements(t, idx)
	sbom, provenance := statements["https://spdx.dev/Document"], statements["https://slsa.dev/provenance/v1"]
	if sbom == nil || provenance == nil {
		t.Fatalf("attestation manifest holds %d statements, want the SPDX SBOM and SLSA v1 provenance", len(statements))
	}
	var doc struct {
		SPDXVersion string `json:"spdxVersion"`
		Packages    []struct {
			Name string `json:"name"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(sbom, &doc); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range doc.Packages {
		names[p.Name] = true
	}
	if doc.SPDXVersion != "SPDX-2.3" || !names["dpkg"] || !names["base-files"] || !names["bash"] {
		t.Errorf("SBOM %s lists %d packages without Debian's dpkg, base-files and bash", doc.SPDXVersion, len(doc.Packages))
	}

	digestRef := strings.Split(dest, ":one")[0] + "@" + digest.String()
	for _, check := range [][]string{
		{"verify", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry", digestRef},
		{"verify-attestation", "--type", "spdxjson", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry", digestRef},
		{"verify-attestation", "--type", "slsaprovenance1", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry", digestRef},
	} {
		if out, err := cosignRun(t, check...); err != nil {
			t.Errorf("cosign %s: %v\n%s", strings.Join(check[:3], " "), err, out)
		}
	}

	again, _ := build("two")
	if again != digest {
		t.Errorf("two reproducible builds gave %s and %s", digest, again)
	}
}

// attestationStatements checks the index's attestation manifest refers to
// its image and that every statement's subject is that image, and returns
// the predicates by predicate type.
func attestationStatements(t *testing.T, idx v1.ImageIndex) map[string]json.RawMessage {
	t.Helper()
	manifest, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var image v1.Hash
	var att *v1.Descriptor
	for i, d := range manifest.Manifests {
		if d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			att = &manifest.Manifests[i]
		} else {
			image = d.Digest
		}
	}
	if att == nil || att.Annotations["vnd.docker.reference.digest"] != image.String() {
		t.Fatalf("index %+v: want an attestation manifest referring to the image %s", manifest.Manifests, image)
	}
	attImg, err := idx.Image(att.Digest)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := attImg.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]json.RawMessage{}
	for _, l := range layers {
		raw := layerContent(t, l)
		var st struct {
			PredicateType string `json:"predicateType"`
			Subject       []struct {
				Digest map[string]string `json:"digest"`
			} `json:"subject"`
			Predicate json.RawMessage `json:"predicate"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Subject) != 1 || "sha256:"+st.Subject[0].Digest["sha256"] != image.String() {
			t.Errorf("%s statement is about %v, want the published image %s", st.PredicateType, st.Subject, image)
		}
		out[st.PredicateType] = st.Predicate
	}
	return out
}
