// Package sbom catalogs an image's packages with syft and writes an SPDX 2.3
// document. It runs in its own program (cmd/kiln-sbom), as BuildKit runs its
// SBOM scanner apart from the builder: syft is most of the code a build
// would otherwise load and initialise every time, for a flag few builds use.
package sbom

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/anchore/stereoscope/pkg/file"
	"github.com/anchore/stereoscope/pkg/image"
	"github.com/anchore/syft/syft"
	"github.com/anchore/syft/syft/format/spdxjson"
	"github.com/anchore/syft/syft/source/stereoscopesource"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	// syft reads newer RPM databases through database/sql's "sqlite".
	_ "modernc.org/sqlite"
)

// SPDX catalogs the packages of img with syft (no scanner image) and returns
// an SPDX 2.3 JSON document. created is the document's creation time; with
// it the document depends only on the image.
func SPDX(ctx context.Context, img v1.Image, name, workDir string, created time.Time) ([]byte, error) {
	tmp := file.NewTempDirGenerator("kiln-sbom")
	defer tmp.Cleanup()
	cacheDir, err := os.MkdirTemp(workDir, "sbom-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(cacheDir)
	stereo := image.New(img, tmp, cacheDir)
	if err := stereo.Read(ctx); err != nil {
		return nil, fmt.Errorf("SBOM: reading the image: %w", err)
	}
	defer stereo.Cleanup()
	src := stereoscopesource.New(stereo, stereoscopesource.ImageConfig{Reference: name})
	cfg := syft.DefaultCreateSBOMConfig().WithParallelism(2)
	s, err := syft.CreateSBOM(ctx, src, cfg)
	if err != nil {
		return nil, fmt.Errorf("SBOM: cataloging the image: %w", err)
	}
	encoderCfg := spdxjson.DefaultEncoderConfig()
	encoderCfg.Version = "2.3"
	enc, err := spdxjson.NewFormatEncoderWithConfig(encoderCfg)
	if err != nil {
		return nil, err
	}
	var doc bytes.Buffer
	if err := enc.Encode(&doc, *s); err != nil {
		return nil, fmt.Errorf("SBOM: writing SPDX: %w", err)
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	return pinSPDXDocument(doc.Bytes(), created, "https://spdx.org/spdxdocs/kiln/"+digest.Hex)
}

// pinSPDXDocument replaces the two fields syft fills from the clock and a
// random UUID, so that the same image always gives the same bytes. The
// document is re-encoded with sorted keys.
func pinSPDXDocument(doc []byte, created time.Time, namespace string) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		return nil, fmt.Errorf("SBOM: %w", err)
	}
	if info, ok := m["creationInfo"].(map[string]any); ok {
		info["created"] = created.UTC().Format(time.RFC3339)
	}
	m["documentNamespace"] = namespace
	return json.Marshal(m)
}
