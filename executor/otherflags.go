package executor

import (
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/moby/buildkit/client"

	"github.com/kilnbuild/kiln/flagmap"
)

// What the maintained fork's and Kimia's flags add to a build, gathered
// before the daemon starts so that bad values fail first.
type otherFlags struct {
	secrets      map[string][]byte // --secret values, read once; never logged
	frontendOpts map[string]string // Kimia's --buildkit-opt
	provenance   string            // BuildKit provenance mode, "" for none
	cacheImports []client.CacheOptionsEntry
	cacheExports []client.CacheOptionsEntry
}

func readOtherFlags(inv *flagmap.Invocation) (*otherFlags, error) {
	o := &inv.Options
	getenv := inv.Getenv
	if getenv == nil {
		getenv = os.LookupEnv
	}
	secrets, err := flagmap.ParseSecrets(o.Secrets, getenv)
	if err != nil {
		return nil, err
	}
	values, err := flagmap.ReadSecrets(secrets, getenv)
	if err != nil {
		return nil, err
	}
	attestations, err := flagmap.Attestations(o)
	if err != nil {
		return nil, err
	}
	extra := &otherFlags{secrets: values, frontendOpts: keyValues(o.BuildkitOpts), provenance: attestations.Provenance}
	for _, spec := range o.ImportCache {
		entry, err := cacheEntry("--import-cache", spec)
		if err != nil {
			return nil, err
		}
		extra.cacheImports = append(extra.cacheImports, entry)
	}
	for _, spec := range o.ExportCache {
		entry, err := cacheEntry("--export-cache", spec)
		if err != nil {
			return nil, err
		}
		extra.cacheExports = append(extra.cacheExports, entry)
	}
	return extra, nil
}

func cacheEntry(flag, spec string) (client.CacheOptionsEntry, error) {
	c, err := flagmap.ParseCacheSpec(flag, spec)
	return client.CacheOptionsEntry{Type: c.Type, Attrs: c.Attrs}, err
}

// apply adds the flags to the solve. An imported cache is only read when
// the build does not ask BuildKit to ignore caches.
func (f *otherFlags) apply(req *SolveRequest) {
	req.Secrets = f.secrets
	req.FrontendOpts = f.frontendOpts
	req.Provenance = f.provenance
	req.CacheImports = append(req.CacheImports, f.cacheImports...)
	req.CacheExports = append(req.CacheExports, f.cacheExports...)
	if len(f.cacheImports) > 0 {
		req.NoCache = false
	}
}

// withAnnotations writes the fork's --annotation values into the manifest
// kiln publishes.
func withAnnotations(img v1.Image, annotations map[string]string) v1.Image {
	if len(annotations) == 0 {
		return img
	}
	return mutate.Annotations(img, annotations).(v1.Image)
}
