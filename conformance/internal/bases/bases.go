// Package bases seeds a registry with the base images the corpus pulls, made
// by internal/testenv so Kaniko's goldens and kiln's builds start from the
// same bytes: library/busybox (FROM busybox) and library/debian:bookworm.
package bases

import (
	"fmt"
	"testing"

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
func debianImage(logf func(string, ...any)) (img v1.Image, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(tbFailure)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("debian base image: %s", string(f))
		}
	}()
	return testenv.DebianImage(programTB{logf: logf}), nil
}

type tbFailure string

// programTB implements the testing.TB methods testenv's image builders use;
// the embedded nil TB supplies the unexported method and panics on others.
type programTB struct {
	testing.TB
	logf func(string, ...any)
}

func (programTB) Helper()                        {}
func (programTB) Name() string                   { return "golden" }
func (p programTB) Logf(format string, a ...any) { p.logf(format, a...) }
func (programTB) Fatalf(format string, a ...any) { panic(tbFailure(fmt.Sprintf(format, a...))) }
func (programTB) Fatal(a ...any)                 { panic(tbFailure(fmt.Sprint(a...))) }
func (programTB) Errorf(format string, a ...any) { panic(tbFailure(fmt.Sprintf(format, a...))) }
func (programTB) Skipf(format string, a ...any)  { panic(tbFailure(fmt.Sprintf(format, a...))) }
func (programTB) Cleanup(func())                 {}
func (programTB) Setenv(key, value string)       { panic(tbFailure("Setenv is not supported outside tests")) }
func (programTB) TempDir() string                { panic(tbFailure("TempDir is not supported outside tests")) }
