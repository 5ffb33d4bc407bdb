package compat

import (
	"context"
	"io"

	"fmt"
	"github.com/kilnbuild/kiln/compat/buildcontext"
	"golang.org/x/sys/unix"
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
const UnknownContextPrefixError = buildcontext.UnknownPrefixError

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
		if u, err := url.Parse(src.Value); err == nil && buildcontext.IsAzureBlobHost(u.Hostname()) {
			src.Scheme = "azure"
		}
	default:
		return src, fmt.Errorf("%s %s: %s", src.Flag, src.Value, UnknownContextPrefixError)
	}
	return src, nil
}

// ResolveContext turns --context/--bucket/--context-sub-path into a local
// directory. Like Kaniko, --context-sub-path applies only to scheme
// contexts (dir:// included) and is ignored for a plain directory.
// Remote contexts are fetched into <kaniko dir>/buildcontext like Kaniko's
// (or a temporary directory when that is not usable); stdin feeds tar://stdin.
func ResolveContext(ctx context.Context, opts *flagmap.Options, stdin io.Reader) (*BuildContext, error) {
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
		fetched, err := buildcontext.Fetch(ctx, buildcontext.Request{
			Context: src.Value,
			Flag:    src.Flag,
			SubPath: opts.ContextSubPath,
			Git:     opts.Git,
			GitCredentials: buildcontext.GitCredentials{
				Username: opts.Env.GitUsername,
				Password: opts.Env.GitPassword,
				Token:    opts.Env.GitToken,
			},
			GitPullMethod: opts.Env.GitPullMethod,
			Stdin:         stdin,
			Dir:           remoteContextDir(opts),
		})
		if err != nil {
			return nil, err
		}
		return &BuildContext{Dir: fetched.Dir, Cleanup: fetched.Cleanup}, nil
	}
}

// remoteContextDir is Kaniko's <kaniko dir>/buildcontext when it can be used
// (absent, or empty), else "" for a private temporary directory.
func remoteContextDir(opts *flagmap.Options) string {
	dir := filepath.Join(KanikoDir(opts), "buildcontext")
	entries, err := os.ReadDir(dir)
	switch {
	case err == nil && len(entries) == 0:
		return dir
	case os.IsNotExist(err) && writable(KanikoDir(opts)):
		return dir
	}
	return ""
}

func writable(dir string) bool {
	return unix.Access(dir, unix.W_OK) == nil
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
