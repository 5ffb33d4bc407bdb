package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/kilnbuild/kiln/executor/publish"
	"github.com/kilnbuild/kiln/flagmap"
)

// signerFor loads Kimia's --cosign-key before anything is built, so that a
// missing key or a wrong password fails first and nothing is pushed.
func signerFor(inv *flagmap.Invocation) (*publish.Signer, error) {
	if !inv.Options.Sign {
		return nil, nil
	}
	getenv := inv.Getenv
	if getenv == nil {
		getenv = os.LookupEnv
	}
	return publish.NewSigner(inv.Options.CosignKey, inv.Options.CosignPasswordEnv, getenv)
}

// BuildKit's names for attestation manifests and their statements.
const (
	referenceTypeAnnotation = "vnd.docker.reference.type"
	attestationManifest     = "attestation-manifest"
	predicateTypeAnnotation = "in-toto.io/predicate-type"
)

// exportedImage opens the image BuildKit exported and, when it exported an
// attestation manifest with it (provenance was asked for), the provenance
// statement it holds.
func exportedImage(res *SolveResult) (v1.Image, *publish.Statement, error) {
	idx, err := layout.ImageIndexFromPath(res.LayoutDir)
	if err != nil {
		return nil, nil, fmt.Errorf("reading BuildKit's export: %w", err)
	}
	h, err := v1.NewHash(res.ManifestDigest)
	if err != nil {
		return nil, nil, fmt.Errorf("BuildKit reported digest %q: %w", res.ManifestDigest, err)
	}
	if img, err := idx.Image(h); err == nil {
		if mt, _ := img.MediaType(); !mt.IsIndex() {
			return img, nil, nil
		}
	}
	child, err := idx.ImageIndex(h)
	if err != nil {
		return nil, nil, fmt.Errorf("reading BuildKit's export %s: %w", h, err)
	}
	manifest, err := child.IndexManifest()
	if err != nil {
		return nil, nil, err
	}
	var img v1.Image
	var provenance *publish.Statement
	for _, desc := range manifest.Manifests {
		m, err := child.Image(desc.Digest)
		if err != nil {
			return nil, nil, err
		}
		if desc.Annotations[referenceTypeAnnotation] != attestationManifest {
			img = m
			continue
		}
		if provenance, err = provenanceIn(m); err != nil {
			return nil, nil, err
		}
	}
	if img == nil {
		return nil, nil, fmt.Errorf("BuildKit's export %s holds no image", h)
	}
	return img, provenance, nil
}

// provenanceIn finds the SLSA provenance statement in an attestation manifest.
func provenanceIn(m v1.Image) (*publish.Statement, error) {
	manifest, err := m.Manifest()
	if err != nil {
		return nil, err
	}
	layers, err := m.Layers()
	if err != nil {
		return nil, err
	}
	for i, desc := range manifest.Layers {
		if !strings.HasPrefix(desc.Annotations[predicateTypeAnnotation], "https://slsa.dev/provenance/") {
			continue
		}
		rc, err := layers[i].Uncompressed()
		if err != nil {
			return nil, err
		}
		raw, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		var statement struct {
			PredicateType string          `json:"predicateType"`
			Predicate     json.RawMessage `json:"predicate"`
		}
		if err := json.Unmarshal(raw, &statement); err != nil {
			return nil, fmt.Errorf("BuildKit's provenance: %w", err)
		}
		return &publish.Statement{PredicateType: statement.PredicateType, Predicate: statement.Predicate}, nil
	}
	return nil, nil
}

// attest makes the statements --attestation or --attest ask for about img,
// the image kiln publishes (BuildKit's provenance re-addressed to it), and
// lays them out as BuildKit does. Their times are created, so reproducible
// builds give reproducible attestations.
func attest(ctx context.Context, opts *flagmap.Options, img v1.Image, provenance *publish.Statement, workDir string) (v1.Image, error) {
	req, err := flagmap.Attestations(opts)
	if err != nil || !req.Any() {
		return img, err
	}
	created := attestationTime(opts)
	repository := ""
	if len(opts.Destinations) > 0 {
		if ref, err := name.ParseReference(opts.Destinations[0], name.WeakValidation); err == nil {
			repository = ref.Context().Name()
		}
	}
	var statements []publish.Statement
	if req.SBOM {
		doc, err := spdxSBOM(ctx, img, repository, workDir, created)
		if err != nil {
			return nil, err
		}
		statements = append(statements, publish.Statement{PredicateType: spdxPredicateType, Predicate: doc})
	}
	if req.Provenance != "" {
		if provenance == nil {
			return nil, fmt.Errorf("--attestation: BuildKit exported no provenance")
		}
		pinned, err := pinProvenance(provenance.Predicate, created)
		if err != nil {
			return nil, err
		}
		statements = append(statements, publish.Statement{PredicateType: provenance.PredicateType, Predicate: pinned})
	}
	platform, err := v1.ParsePlatform(opts.CustomPlatform)
	if err != nil {
		return nil, err
	}
	idx, err := publish.AttestationIndex(img, *platform, repository, statements)
	if err != nil {
		return nil, err
	}
	return publish.WithAttestations(img, statements, idx), nil
}

// attestationTime is SOURCE_DATE_EPOCH (or --timestamp); under
// --reproducible without it, the epoch, as Kaniko zeroes image times.
func attestationTime(opts *flagmap.Options) time.Time {
	switch {
	case opts.SourceDateEpoch != nil:
		return time.Unix(*opts.SourceDateEpoch, 0).UTC()
	case opts.Reproducible:
		return time.Unix(0, 0).UTC()
	default:
		return time.Now().UTC()
	}
}

// pinProvenance makes BuildKit's SLSA provenance about the image kiln
// publishes, and the same for two runs of the same build: the run's times
// become created, its invocation ID goes, and so do BuildKit's own
// metadata on the layers it exported (kiln reshaped them) and on the
// digests of its build graph (they change with every session).
func pinProvenance(predicate []byte, created time.Time) ([]byte, error) {
	var p map[string]any
	if err := json.Unmarshal(predicate, &p); err != nil {
		return nil, fmt.Errorf("BuildKit's provenance: %w", err)
	}
	stamp := created.Format(time.RFC3339)
	for _, path := range [][]string{{"runDetails", "metadata"}, {"metadata"}} {
		m := objectAt(p, path...)
		if m == nil {
			continue
		}
		for _, key := range []string{"startedOn", "finishedOn", "buildStartedOn", "buildFinishedOn"} {
			if _, ok := m[key]; ok {
				m[key] = stamp
			}
		}
		for _, key := range []string{"invocationId", "invocationID", "buildInvocationID", "buildInvocationId"} {
			delete(m, key)
		}
		if bk := objectAt(m, "buildkit_metadata"); bk != nil {
			delete(bk, "layers")
			if infos, ok := objectAt(bk, "source")["infos"].([]any); ok {
				for _, info := range infos {
					if info, ok := info.(map[string]any); ok {
						delete(info, "digestMapping")
					}
				}
			}
		}
	}
	return json.Marshal(p)
}

// objectAt follows keys through nested JSON objects; nil when one is missing.
func objectAt(m map[string]any, keys ...string) map[string]any {
	for _, key := range keys {
		m, _ = m[key].(map[string]any)
	}
	return m
}
