package compat

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/kilnbuild/kiln/flagmap"
)

// BuildContext is a local directory holding the build context.
type BuildContext struct {
	Dir     string // absolute
	Cleanup func() // removes anything kiln unpacked; never nil
}

// ContextSource is how a --context or --bucket value is read.
type ContextSource struct {
	Flag   string // the flag that supplied the value, e.g. "--context"
	Value  string // as given
	Scheme string // "" for a plain directory, else "dir", "tar", "gs", "s3", "git", "https" or "azure"
	Path   string // the part after "scheme://" (the value itself for a plain directory)
}

// UnknownContextPrefixError is Kaniko's text for a scheme it does not know.
const UnknownContextPrefixError = "unknown build context prefix provided, please use one of the following: gs://, dir://, tar://, s3://, git://, https://"

// azureBlobHostSuffixes are the Azure Blob Storage endpoints Kaniko
// recognises inside https:// contexts.
var azureBlobHostSuffixes = []string{
	".blob.core.windows.net",
	".blob.core.chinacloudapi.cn",
	".blob.core.cloudapi.de",
	".blob.core.usgovcloudapi.net",
}

// ClassifyContext recognises the context source the way Kaniko does:
// --context without "://" is a directory, --bucket is a GCS bucket, and
// anything else is split at the first "://".
func ClassifyContext(opts *flagmap.Options) (ContextSource, error) {
	if opts.Context == "" && opts.Bucket == "" {
		return ContextSource{}, fmt.Errorf("--context is empty: pass the build context directory with --context (or a bucket with --bucket)")
	}
	src := ContextSource{Flag: "--context", Value: opts.Context}
	// Kaniko reads --bucket only when --context is empty or a scheme URL, so
	// the default --context=/workspace/ hides it.
	if opts.Bucket != "" && (opts.Context == "" || strings.Contains(opts.Context, "://")) {
		src = ContextSource{Flag: "--bucket", Value: opts.Bucket}
		if !strings.Contains(opts.Bucket, "://") {
			src.Value = "gs://" + opts.Bucket
		}
	}
	scheme, rest, found := strings.Cut(src.Value, "://")
	if !found {
		src.Path = src.Value
		return src, nil
	}
	src.Path = rest
	switch scheme {
	case "dir", "tar", "gs", "s3", "git":
		src.Scheme = scheme
	case "https":
		src.Scheme = "https"
		if u, err := url.Parse(src.Value); err == nil && isAzureBlobHost(u.Hostname()) {
			src.Scheme = "azure"
		}
	default:
		return src, fmt.Errorf("%s %s: %s", src.Flag, src.Value, UnknownContextPrefixError)
	}
	return src, nil
}

func isAzureBlobHost(host string) bool {
	for _, suffix := range azureBlobHostSuffixes {
		if strings.HasSuffix(host, suffix) {
			return true
		}
	}
	return false
}

// remoteContextFix says what to do instead of a context kind kiln cannot
// fetch yet.
var remoteContextFix = map[string]string{
	"tar":   "unpack the gzip tarball into a directory and pass --context=dir://<directory>",
	"gs":    "download and unpack the tarball (gsutil cp … | tar -xz) and pass --context=dir://<directory>",
	"s3":    "download and unpack the tarball (aws s3 cp … - | tar -xz) and pass --context=dir://<directory>",
	"git":   "clone the repository first (git clone) and pass --context=dir://<directory>",
	"https": "download and unpack the tarball (wget -O- … | tar -xz) and pass --context=dir://<directory>",
	"azure": "download and unpack the blob (az storage blob download) and pass --context=dir://<directory>",
}

// ResolveContext turns --context/--bucket/--context-sub-path into a local
// directory. Like Kaniko, --context-sub-path applies only to scheme
// contexts (dir:// included) and is ignored for a plain directory.
func ResolveContext(opts *flagmap.Options) (*BuildContext, error) {
	src, err := ClassifyContext(opts)
	if err != nil {
		return nil, err
	}
	switch src.Scheme {
	case "":
		return localContext(src.Flag, src.Value, src.Path)
	case "dir":
		dir := src.Path
		if opts.ContextSubPath != "" {
			dir = filepath.Join(dir, opts.ContextSubPath)
			if _, err := os.Stat(dir); err != nil {
				return nil, fmt.Errorf("--context-sub-path %s: %s does not exist in the context %s; pass a sub-directory that exists", opts.ContextSubPath, dir, src.Path)
			}
		}
		return localContext(src.Flag, src.Value, dir)
	default:
		kind := src.Scheme + "://"
		if src.Scheme == "azure" {
			kind = "Azure Blob Storage"
		}
		return nil, fmt.Errorf("%s %s: %s build contexts are not yet supported by kiln; %s", src.Flag, src.Value, kind, remoteContextFix[src.Scheme])
	}
}

func localContext(flag, value, dir string) (*BuildContext, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v", flag, value, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case os.IsNotExist(err):
		return nil, fmt.Errorf("%s %s: directory %s does not exist; pass the directory holding your sources (the job's checkout or workspace)", flag, value, abs)
	case err != nil:
		return nil, fmt.Errorf("%s %s: %v", flag, value, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("%s %s: %s is not a directory; pass the directory holding your sources, not a file", flag, value, abs)
	}
	return &BuildContext{Dir: abs, Cleanup: func() {}}, nil
}
