// Command kiln-sbom writes the SPDX SBOM of an image in an OCI layout to
// standard output. The executor runs it for --attestation/--attest sbom.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/kilnbuild/kiln/internal/sbom"
)

func main() {
	var (
		layoutDir = flag.String("layout", "", "OCI layout holding the image")
		digest    = flag.String("digest", "", "the image's manifest digest in the layout")
		name      = flag.String("name", "", "the image's repository, named in the document")
		created   = flag.String("created", "", "the document's creation time (RFC 3339)")
		workDir   = flag.String("work-dir", os.TempDir(), "where syft's temporary files go")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *layoutDir, *digest, *name, *created, *workDir); err != nil {
		fmt.Fprintln(os.Stderr, "kiln-sbom:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, layoutDir, digest, name, created, workDir string) error {
	when, err := time.Parse(time.RFC3339, created)
	if err != nil {
		return fmt.Errorf("-created: %w", err)
	}
	hash, err := v1.NewHash(digest)
	if err != nil {
		return fmt.Errorf("-digest: %w", err)
	}
	index, err := layout.ImageIndexFromPath(layoutDir)
	if err != nil {
		return fmt.Errorf("-layout: %w", err)
	}
	img, err := index.Image(hash)
	if err != nil {
		return fmt.Errorf("-layout: %w", err)
	}
	doc, err := sbom.SPDX(ctx, img, name, workDir, when)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(doc)
	return err
}
