package compat

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const outputsTestDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func outputsTestInputs(t *testing.T) ([]name.Tag, v1.Hash) {
	t.Helper()
	digest, err := v1.NewHash(outputsTestDigest)
	if err != nil {
		t.Fatal(err)
	}
	var tags []name.Tag
	for _, ref := range []string{"gcr.io/foo/bar:123", "bob/image", "127.0.0.1:5000/team/app"} {
		tag, err := name.NewTag(ref, name.WeakValidation)
		if err != nil {
			t.Fatal(err)
		}
		tags = append(tags, tag)
	}
	return tags, digest
}

func TestDigestFileContentHasNoNewline(t *testing.T) {
	_, digest := outputsTestInputs(t)
	if got := string(DigestFileContent(digest)); got != outputsTestDigest {
		t.Fatalf("digest file = %q, want %q", got, outputsTestDigest)
	}
}

func TestImageNameDigestContent(t *testing.T) {
	tags, digest := outputsTestInputs(t)
	d := outputsTestDigest
	for _, tc := range []struct {
		withTag bool
		want    string
	}{
		{false, "gcr.io/foo/bar@" + d + "\nindex.docker.io/bob/image@" + d + "\n127.0.0.1:5000/team/app@" + d + "\n"},
		{true, "gcr.io/foo/bar:123@" + d + "\nindex.docker.io/bob/image:latest@" + d + "\n127.0.0.1:5000/team/app:latest@" + d + "\n"},
	} {
		if got := string(ImageNameDigestContent(tags, digest, tc.withTag)); got != tc.want {
			t.Errorf("withTag=%t:\n got %q\nwant %q", tc.withTag, got, tc.want)
		}
	}
}

func TestBuilderOutputContentKeepsDestinationsAsGiven(t *testing.T) {
	tags, digest := outputsTestInputs(t)
	got, err := BuilderOutputContent(tags, digest)
	if err != nil {
		t.Fatal(err)
	}
	d := outputsTestDigest
	want := `{"name":"gcr.io/foo/bar:123","digest":"` + d + `"}` + "\n" +
		`{"name":"bob/image","digest":"` + d + `"}` + "\n" +
		`{"name":"127.0.0.1:5000/team/app","digest":"` + d + `"}` + "\n"
	if string(got) != want {
		t.Fatalf("BUILDER_OUTPUT images:\n got %q\nwant %q", got, want)
	}
}
