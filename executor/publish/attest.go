package publish

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
)

// inTotoStatementType is the statement version BuildKit and cosign write.
const inTotoStatementType = "https://in-toto.io/Statement/v0.1"

// InTotoStatement is the in-toto statement of st about the image digest,
// named after its repository. Field order is fixed, so the bytes are too.
func InTotoStatement(repository string, digest v1.Hash, st Statement) ([]byte, error) {
	type subject struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	}
	return json.Marshal(struct {
		Type          string          `json:"_type"`
		PredicateType string          `json:"predicateType"`
		Subject       []subject       `json:"subject"`
		Predicate     json.RawMessage `json:"predicate"`
	}{inTotoStatementType, st.PredicateType, []subject{{repository, map[string]string{digest.Algorithm: digest.Hex}}}, st.Predicate})
}

// attested is the built image with the statements kiln makes about it and,
// when it publishes them in BuildKit's form, the index that holds both.
type attested struct {
	v1.Image
	statements []Statement
	index      v1.ImageIndex
}

// WithAttestations attaches statements about img: signing publishers attest
// them with cosign, and with index (see AttestationIndex) the destinations,
// the OCI layout and the digest files get the index instead of the image.
// The docker tarball keeps the image alone.
func WithAttestations(img v1.Image, statements []Statement, index v1.ImageIndex) v1.Image {
	if len(statements) == 0 && index == nil {
		return img
	}
	return attested{Image: img, statements: statements, index: index}
}

func statementsOf(img v1.Image) []Statement {
	if a, ok := img.(attested); ok {
		return a.statements
	}
	return nil
}

func indexOf(img v1.Image) v1.ImageIndex {
	if a, ok := img.(attested); ok {
		return a.index
	}
	return nil
}

// publishedDigest is the digest a destination's tag points to: the
// attestation index when there is one, else the image's.
func publishedDigest(img v1.Image) (v1.Hash, error) {
	if idx := indexOf(img); idx != nil {
		return idx.Digest()
	}
	return img.Digest()
}

// signing signs what the push before it wrote to tag.
type signing struct {
	cfg Config
	tag name.Tag
}

func (s signing) Publish(ctx context.Context, img v1.Image) error {
	digest, err := publishedDigest(img)
	if err != nil {
		return err
	}
	ref := s.tag.Context().Digest(digest.String())
	options := s.cfg.Registry.RemoteOptions(ctx, s.tag.RegistryStr(), s.cfg.Keychain)
	if err := s.cfg.Signer.Sign(ctx, ref, statementsOf(img), ociremote.WithRemoteOptions(append(options, s.cfg.remoteOptions...)...)); err != nil {
		return fmt.Errorf("--sign: %s", oneLine(err))
	}
	s.cfg.Log.Infof("Signed %s", ref)
	return nil
}

// Media types and annotations of BuildKit's attestation manifests, which
// `docker buildx imagetools inspect` and other tools read.
const (
	inTotoLayerMediaType    = "application/vnd.in-toto+json"
	predicateTypeAnnotation = "in-toto.io/predicate-type"
	referenceDigestKey      = "vnd.docker.reference.digest"
	referenceTypeKey        = "vnd.docker.reference.type"
	attestationManifestType = "attestation-manifest"
)

// AttestationIndex lays img out the way BuildKit exports an image with
// attestations: an OCI index of the image (for platform) and an attestation
// manifest whose layers are the in-toto statements about the image, named
// after repository. Nothing in it depends on time, so the same image and
// statements always give the same index digest.
func AttestationIndex(img v1.Image, platform v1.Platform, repository string, statements []Statement) (v1.ImageIndex, error) {
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	cfg, err := empty.Image.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg.OS, cfg.Architecture = "unknown", "unknown"
	manifest, err := mutate.ConfigFile(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON), cfg)
	if err != nil {
		return nil, err
	}
	for _, st := range statements {
		statement, err := InTotoStatement(repository, digest, st)
		if err != nil {
			return nil, err
		}
		manifest, err = mutate.Append(manifest, mutate.Addendum{
			Layer:       static.NewLayer(statement, inTotoLayerMediaType),
			Annotations: map[string]string{predicateTypeAnnotation: st.PredicateType},
		})
		if err != nil {
			return nil, err
		}
	}
	unknown := v1.Platform{OS: "unknown", Architecture: "unknown"}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &platform}},
		mutate.IndexAddendum{Add: manifest, Descriptor: v1.Descriptor{Platform: &unknown, Annotations: map[string]string{
			referenceDigestKey: digest.String(),
			referenceTypeKey:   attestationManifestType,
		}}},
	), nil
}

// writeImageOrIndex pushes the attestation index when img has one.
func writeImageOrIndex(tag name.Tag, img v1.Image, options []remote.Option) error {
	if idx := indexOf(img); idx != nil {
		return remote.WriteIndex(tag, idx, options...)
	}
	return remote.Write(tag, img, options...)
}
