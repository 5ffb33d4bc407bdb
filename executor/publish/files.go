package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/sirupsen/logrus"

	"github.com/kilnbuild/kiln/compat"
)

// digestOutput writes a digest or name file: a local file, or an HTTP PUT
// when the target is an https:// URL (often a pre-signed bucket URL).
type digestOutput struct {
	flag    string
	target  string
	content func(v1.Hash) []byte
	client  *http.Client
	log     logrus.FieldLogger
}

func (cfg Config) digestOutput(flag, target string, content func(v1.Hash) []byte) digestOutput {
	return digestOutput{flag: flag, target: target, content: content, client: cfg.HTTPClient, log: cfg.Log}
}

func (o digestOutput) Publish(ctx context.Context, img v1.Image) error {
	digest, err := publishedDigest(img)
	if err != nil {
		return fmt.Errorf("%s: computing the image digest: %w", o.flag, err)
	}
	if strings.HasPrefix(o.target, "https://") {
		return o.put(ctx, o.content(digest))
	}
	return writeLocalFile(o.flag, o.target, o.content(digest))
}

// put uploads like Kaniko: Content-Type text/plain and the response status is
// not an error (a warning here). The URL's query may hold a signature, so only
// its scheme, host and path are ever printed.
func (o digestOutput) put(ctx context.Context, content []byte) error {
	shown := redactURL(o.target)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, o.target, bytes.NewReader(content))
	if err != nil {
		return fmt.Errorf("%s %s: invalid URL (give a path or an https:// URL)", o.flag, shown)
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := o.client.Do(req)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return fmt.Errorf("%s: uploading to %s: %v", o.flag, shown, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		o.log.Warnf("%s: %s answered %s to the upload", o.flag, shown, resp.Status)
	}
	return nil
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "https://<unparsable URL>"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// writeLocalFile creates a missing parent directory with mode 0700 and the
// file with mode 0644, as Kaniko does.
func writeLocalFile(flag, path string, content []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("%s %s: creating its directory: %w", flag, path, err)
	}
	if err := os.WriteFile(path, content, 0o644); err != nil {
		return fmt.Errorf("%s %s: %w", flag, path, err)
	}
	return nil
}

// ociLayout writes a fresh OCI image layout holding only this image: the
// index is replaced, and its descriptor carries no annotations, like Kaniko.
type ociLayout struct{ path string }

func (o ociLayout) Publish(_ context.Context, img v1.Image) error {
	p, err := layout.Write(o.path, empty.Index)
	if err != nil {
		return fmt.Errorf("--oci-layout-path %s: %w", o.path, err)
	}
	if idx := indexOf(img); idx != nil {
		if err := p.AppendIndex(idx); err != nil {
			return fmt.Errorf("--oci-layout-path %s: writing the image and its attestations: %w", o.path, err)
		}
		return nil
	}
	if err := p.AppendImage(img); err != nil {
		return fmt.Errorf("--oci-layout-path %s: writing the image: %w", o.path, err)
	}
	return nil
}

// tarballOutput writes a `docker load`-able tarball tagged with every
// destination (":latest" added when implicit, by go-containerregistry).
type tarballOutput struct {
	path string
	tags []name.Tag
}

func (o tarballOutput) Publish(_ context.Context, img v1.Image) error {
	refs := make(map[name.Tag]v1.Image, len(o.tags))
	for _, tag := range o.tags {
		refs[tag] = img
	}
	if err := tarball.MultiWriteToFile(o.path, refs); err != nil {
		return fmt.Errorf("--tar-path %s: %w", o.path, err)
	}
	return nil
}

// builderOutput writes $BUILDER_OUTPUT/images after every push succeeded.
// Like Kaniko it does not create the directory.
type builderOutput struct {
	dir  string
	tags []name.Tag
}

func (o builderOutput) Publish(_ context.Context, img v1.Image) error {
	digest, err := publishedDigest(img)
	if err != nil {
		return fmt.Errorf("BUILDER_OUTPUT: computing the image digest: %w", err)
	}
	content, err := compat.BuilderOutputContent(o.tags, digest)
	if err != nil {
		return fmt.Errorf("BUILDER_OUTPUT: %w", err)
	}
	path := filepath.Join(o.dir, "images")
	if err := os.WriteFile(path, content, 0o666); err != nil {
		return fmt.Errorf("BUILDER_OUTPUT: %v (set BUILDER_OUTPUT to an existing, writable directory)", err)
	}
	return nil
}
