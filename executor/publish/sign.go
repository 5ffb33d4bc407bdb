package publish

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ocimutate "github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	cosigntypes "github.com/sigstore/cosign/v2/pkg/types"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	sigpayload "github.com/sigstore/sigstore/pkg/signature/payload"
)

// Signer signs pushed images and attests them with a cosign key, offline:
// nothing goes to a transparency log. Signatures and attestations are
// written next to the image as cosign's sha256-<digest>.sig and .att tags.
type Signer struct {
	sv signature.SignerVerifier
}

// Statement is an in-toto statement's predicate, to be attested about the
// pushed image.
type Statement struct {
	PredicateType string
	Predicate     []byte // JSON
}

// NewSigner loads a cosign private key (cosign's encrypted PEM, or an
// unencrypted PKCS#8 key) with the password in the variable passwordEnv.
func NewSigner(keyFile, passwordEnv string, getenv func(string) (string, bool)) (*Signer, error) {
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("--cosign-key %s: %v; mount the cosign private key there or point --cosign-key at it", keyFile, pathReason(err))
	}
	password, _ := getenv(passwordEnv)
	sv, err := cosign.LoadPrivateKey(pem, []byte(password), nil)
	if err != nil {
		return nil, fmt.Errorf("--cosign-key %s: cannot load the key with the password in %s (%s); set %s to the key's password (--cosign-password-env names another variable)", keyFile, passwordEnv, keyError(err), passwordEnv)
	}
	return &Signer{sv: sv}, nil
}

// keyError words cosign's key errors without their wrapping chain.
func keyError(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

func pathReason(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Sign writes a cosign signature of digest (what a destination's tag now
// points to) and one attestation per statement into digest's repository.
func (s *Signer) Sign(ctx context.Context, digest name.Digest, statements []Statement, opts ...ociremote.Option) error {
	entity := ociremote.SignedUnknown(digest, opts...)
	payload, err := (&sigpayload.Cosign{Image: digest}).MarshalJSON()
	if err != nil {
		return err
	}
	raw, err := s.sv.SignMessage(bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("signing %s: %w", digest, err)
	}
	sig, err := static.NewSignature(payload, base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		return err
	}
	signed, err := ocimutate.AttachSignatureToEntity(entity, sig)
	if err != nil {
		return err
	}
	if err := ociremote.WriteSignatures(digest.Repository, signed, opts...); err != nil {
		return fmt.Errorf("writing the signature of %s: %w", digest, err)
	}
	if len(statements) == 0 {
		return nil
	}
	var attested oci.SignedEntity = entity
	for _, st := range statements {
		att, err := s.attestation(digest, st)
		if err != nil {
			return err
		}
		if attested, err = ocimutate.AttachAttestationToEntity(attested, att); err != nil {
			return err
		}
	}
	if err := ociremote.WriteAttestations(digest.Repository, attested, opts...); err != nil {
		return fmt.Errorf("writing the attestations of %s: %w", digest, err)
	}
	return nil
}

// attestation is a DSSE envelope around the in-toto statement about digest,
// in cosign's .att layer form.
func (s *Signer) attestation(digest name.Digest, st Statement) (oci.Signature, error) {
	h, err := v1.NewHash(digest.DigestStr())
	if err != nil {
		return nil, err
	}
	statement, err := InTotoStatement(digest.Repository.Name(), h, st)
	if err != nil {
		return nil, err
	}
	envelope, err := dsse.WrapSigner(s.sv, cosigntypes.IntotoPayloadType).SignMessage(bytes.NewReader(statement))
	if err != nil {
		return nil, fmt.Errorf("signing the %s attestation of %s: %w", st.PredicateType, digest, err)
	}
	return static.NewAttestation(envelope,
		static.WithLayerMediaType(cosigntypes.DssePayloadType),
		static.WithAnnotations(map[string]string{"predicateType": st.PredicateType}))
}

// PublicKey is the signer's public key, for tests and logs.
func (s *Signer) PublicKey() (crypto.PublicKey, error) { return s.sv.PublicKey() }
