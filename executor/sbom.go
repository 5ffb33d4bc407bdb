package executor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/kilnbuild/kiln/executor/helper"
)

// spdxPredicateType is the predicate type of SPDX documents in in-toto
// statements (BuildKit's and cosign's).
const spdxPredicateType = "https://spdx.dev/Document"

// sbomProgram catalogs images (cmd/kiln-sbom); it is installed next to the
// executor, as BuildKit keeps its SBOM scanner apart from the builder.
const sbomProgram = "kiln-sbom"

// spdxSBOM returns the SPDX 2.3 JSON document of img's packages, made by
// kiln-sbom from a copy of img in workDir. created is the document's
// creation time; with it the document depends only on the image.
func spdxSBOM(ctx context.Context, img v1.Image, name, workDir string, created time.Time) ([]byte, error) {
	program, err := helper.FindBinary("", sbomProgram)
	if err != nil {
		return nil, fmt.Errorf("SBOM (--attestation/--attest): %w", err)
	}
	dir, err := os.MkdirTemp(workDir, "sbom-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(filepath.Join(dir, "image"), empty.Index)
	if err != nil {
		return nil, err
	}
	if err := lp.AppendImage(img); err != nil {
		return nil, fmt.Errorf("SBOM: handing the image to %s: %w", sbomProgram, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, program, "-layout", string(lp), "-digest", digest.String(), "-name", name,
		"-created", created.UTC().Format(time.RFC3339), "-work-dir", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("SBOM: %s failed: %v: %s", sbomProgram, err, helper.OneLine(strings.TrimPrefix(stderr.String(), sbomProgram+": ")))
	}
	return stdout.Bytes(), nil
}
