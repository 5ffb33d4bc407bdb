// Package bases seeds a registry with the base images the corpus pulls, made
// by internal/testenv so Kaniko's goldens and kiln's builds start from the
// same bytes: library/busybox (FROM busybox) and library/debian:bookworm.
package bases

import (
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// DebianRepo is where the Debian image is pushed; FROM debian:bookworm
// reaches it through --registry-mirror.
const DebianRepo = "library/debian:bookworm"

// Digests maps each seeded repository:tag to its manifest digest. Goldens
// record them: a golden is only valid for the base images it was made from.
type Digests map[string]string

// Seed pushes busybox (and, when debian is set, Debian bookworm, which takes
// minutes on a cold cache) into reg. logf receives progress lines.
func Seed(reg *testenv.Registry, debian bool, logf func(string, ...any)) (Digests, error) {
	binary, err := testenv.BusyboxBinary()
	if err != nil {
		return nil, err
	}
	busybox, err := testenv.BusyboxFrom(binary)
	if err != nil {
		return nil, fmt.Errorf("busybox base image: %w", err)
	}
	seeded := Digests{}
	for _, path := range testenv.BusyboxMirrorTags {
		if err := seed(reg, path, busybox, seeded); err != nil {
			return nil, err
		}
	}
	if !debian {
		return seeded, nil
	}
	img, err := debianImage(logf)
	if err != nil {
		return nil, err
	}
	if err := seed(reg, DebianRepo, img, seeded); err != nil {
		return nil, err
	}
	return seeded, nil
}

func seed(reg *testenv.Registry, path string, img v1.Image, seeded Digests) error {
	if err := reg.Seed(path, img); err != nil {
		return fmt.Errorf("seeding %s: %w", path, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("digest of %s: %w", path, err)
	}
	seeded[path] = digest.String()
	return nil
}

// debianImage calls testenv.DebianImage, which only takes a testing.TB,
// from a program that is not a test: Fatalf becomes an error.
func debianImage(logf func(string, ...any)) (v1.Image, error) {
	tb := &testenv.ProgramTB{Label: "golden", LogTo: logf}
	defer tb.Close()
	img, err := testenv.Catch(func() v1.Image { return testenv.DebianImage(tb) })
	if err != nil {
		return nil, fmt.Errorf("debian base image: %w", err)
	}
	return img, nil
}
