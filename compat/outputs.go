package compat

import (
	"encoding/json"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// UnsetDestination is the tag Kaniko gives a --tar-path tarball built with
// --no-push and no --destination, so that `docker load` still accepts it.
const UnsetDestination = "docker.io/unset-repo/unset-image-name"

// DigestFileContent is what --digest-file holds: the manifest digest,
// "sha256:<hex>", with no trailing newline.
func DigestFileContent(digest v1.Hash) []byte {
	return []byte(digest.String())
}

// ImageNameDigestContent is what the name files hold: one line per
// destination, in flag order, "<repository>@<digest>\n", or with withTag
// "<repository>:<tag>@<digest>\n". The repository is go-containerregistry's
// normalised form (foo/bar becomes index.docker.io/foo/bar).
//
// Kaniko builds one buffer for both files and includes the tag whenever
// --image-name-tag-with-digest-file is set, so with both flags both files get
// the tag form. Callers pass withTag accordingly to keep that behaviour.
func ImageNameDigestContent(destinations []name.Tag, digest v1.Hash, withTag bool) []byte {
	var b strings.Builder
	for _, tag := range destinations {
		b.WriteString(tag.Context().Name())
		if withTag {
			b.WriteString(":" + tag.TagStr())
		}
		b.WriteString("@" + digest.String() + "\n")
	}
	return []byte(b.String())
}

// builderOutputLine is one line of $BUILDER_OUTPUT/images.
type builderOutputLine struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
}

// BuilderOutputContent is what $BUILDER_OUTPUT/images holds: one JSON object
// per destination and line, {"name":"<destination as given>","digest":"sha256:..."}.
func BuilderOutputContent(destinations []name.Tag, digest v1.Hash) ([]byte, error) {
	var b strings.Builder
	for _, tag := range destinations {
		line, err := json.Marshal(builderOutputLine{Name: tag.String(), Digest: digest.String()})
		if err != nil {
			return nil, err
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return []byte(b.String()), nil
}
