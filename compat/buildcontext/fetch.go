// Package buildcontext fetches Kaniko's remote build contexts (tar://,
// https:// tarballs, git://, s3://, gs://, Azure blobs) into a local
// directory BuildKit can read.
package buildcontext

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/kilnbuild/kiln/flagmap"
)

// Request says where a remote build context comes from and where it goes.
type Request struct {
	// Context is the --context value with its scheme, e.g. "tar://stdin",
	// "https://host/ctx.tar.gz" or "git://host/org/repo.git#refs/heads/main".
	Context string
	// Flag names the flag Context came from in errors; "" means "--context".
	Flag string
	// SubPath is --context-sub-path, joined after unpacking.
	SubPath string
	Git     flagmap.GitOptions
	// GitCredentials are GIT_USERNAME, GIT_PASSWORD and GIT_TOKEN.
	GitCredentials GitCredentials
	// GitPullMethod is GIT_PULL_METHOD: "http", anything else means https.
	GitPullMethod string
	// Stdin is read by tar://stdin only.
	Stdin io.Reader
	// Dir receives the context exactly (Kaniko uses <kaniko dir>/buildcontext,
	// and --dockerfile values may name paths in it). It is created when
	// missing and must be empty. "" means a new temporary directory.
	Dir string
	// HTTPClient downloads https:// tarballs, Azure blobs and gs:// objects;
	// nil means http.DefaultClient.
	HTTPClient *http.Client
}

// GitCredentials authenticate git:// clones over HTTP(S). Like Kaniko, a
// token wins and is sent as the user name with an empty password.
type GitCredentials struct {
	Username string
	Password string
	Token    string
}

// Fetched is a build context on local disk.
type Fetched struct {
	Dir     string // absolute; --context-sub-path already applied
	Cleanup func() // removes what Fetch wrote; never nil
}

// UnknownPrefixError is Kaniko's text for a scheme it does not know.
const UnknownPrefixError = "unknown build context prefix provided, please use one of the following: gs://, dir://, tar://, s3://, git://, https://"

// azureBlobHostSuffixes are the Azure Blob Storage endpoints Kaniko routes
// to its Azure fetcher instead of a plain https download.
var azureBlobHostSuffixes = []string{
	".blob.core.windows.net",
	".blob.core.chinacloudapi.cn",
	".blob.core.cloudapi.de",
	".blob.core.usgovcloudapi.net",
}

// IsAzureBlobHost reports whether an https:// context is Azure Blob Storage.
func IsAzureBlobHost(host string) bool {
	for _, suffix := range azureBlobHostSuffixes {
		if strings.HasSuffix(host, suffix) {
			return true
		}
	}
	return false
}

// Fetch downloads or unpacks the context named by req.Context into a local
// directory, the way Kaniko's --context schemes do.
func Fetch(ctx context.Context, req Request) (*Fetched, error) {
	flag := req.Flag
	if flag == "" {
		flag = "--context"
	}
	fail := func(err error) error {
		return fmt.Errorf("%s %s: %w", flag, RedactURL(req.Context), err)
	}
	scheme, rest, found := strings.Cut(req.Context, "://")
	if !found {
		return nil, fail(errors.New("not a remote context (scheme:// expected); local directories are used in place"))
	}
	var fetch func(dir string) error
	switch scheme {
	case "tar":
		fetch = func(dir string) error { return fetchTar(rest, req.Stdin, dir) }
	case "https":
		fetch = func(dir string) error { return fetchHTTPS(ctx, req.HTTPClient, req.Context, dir) }
		if u, err := url.Parse(req.Context); err == nil && IsAzureBlobHost(u.Hostname()) {
			fetch = func(dir string) error { return fetchAzure(ctx, req.Context, dir, req.HTTPClient) }
		}
	case "git":
		fetch = func(dir string) error { return fetchGit(ctx, req, rest, dir) }
	case "s3":
		fetch = func(dir string) error { return fetchS3(ctx, rest, dir) }
	case "gs":
		fetch = func(dir string) error { return fetchGCS(ctx, rest, dir, req.HTTPClient) }
	case "dir":
		return nil, fail(errors.New("dir:// contexts are local directories and are used in place, not fetched"))
	default:
		return nil, fail(errors.New(UnknownPrefixError))
	}
	dir, cleanup, err := prepareDir(req.Dir)
	if err != nil {
		return nil, fail(err)
	}
	logrus.Infof("Fetching build context %s", RedactURL(req.Context))
	if err := fetch(dir); err != nil {
		cleanup()
		return nil, fail(err)
	}
	final, err := applySubPath(dir, req.SubPath)
	if err != nil {
		cleanup()
		return nil, err
	}
	return &Fetched{Dir: final, Cleanup: cleanup}, nil
}

// prepareDir makes dir (or a temporary directory) ready to receive the
// context and returns how to remove what will be written there.
func prepareDir(dir string) (string, func(), error) {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "kiln-context-")
		if err != nil {
			return "", nil, err
		}
		return tmp, func() { removeTree(tmp) }, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, err
	}
	entries, err := os.ReadDir(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(abs, 0o750); err != nil {
			return "", nil, fmt.Errorf("creating the context directory: %w", err)
		}
		return abs, func() { removeTree(abs) }, nil
	case err != nil:
		return "", nil, fmt.Errorf("reading the context directory: %w", err)
	case len(entries) > 0:
		return "", nil, fmt.Errorf("the context directory %s is not empty (a previous build left it?); remove its contents and retry", abs)
	}
	return abs, func() { removeContents(abs) }, nil
}

func removeContents(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		removeTree(filepath.Join(dir, e.Name()))
	}
}

// removeTree removes path even when the context made directories in it
// read-only, which stops a non-root user from deleting their entries.
func removeTree(path string) {
	if os.RemoveAll(path) == nil {
		return
	}
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	os.RemoveAll(path)
}

// applySubPath joins --context-sub-path like Kaniko and, beyond Kaniko,
// refuses a sub-path that leaves the fetched context (also through a
// symlink the context carries).
func applySubPath(dir, sub string) (string, error) {
	if sub == "" {
		return dir, nil
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("--context-sub-path %s: "+format, append([]any{sub}, args...)...)
	}
	joined := filepath.Join(dir, sub)
	resolved, err := filepath.EvalSymlinks(joined)
	if errors.Is(err, os.ErrNotExist) {
		return "", fail("no such directory in the fetched context; pass a path relative to the context root")
	}
	if err != nil {
		return "", fail("%v", err)
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fail("%v", err)
	}
	if rel, err := filepath.Rel(root, resolved); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fail("leads outside the fetched context; pass a directory inside it")
	}
	if fi, err := os.Stat(resolved); err != nil || !fi.IsDir() {
		return "", fail("is not a directory in the fetched context; pass a directory")
	}
	return joined, nil
}

// fetchTar unpacks tar://PATH or tar://stdin.
func fetchTar(source string, stdin io.Reader, dir string) error {
	if source != "stdin" {
		f, err := os.Open(source)
		if err != nil {
			return fmt.Errorf("opening the tarball: %w; pass the path of a gzip tar file", unwrapPathError(err))
		}
		defer f.Close()
		return describeTarError(extractTar(f, dir), "pass a gzip tar file")
	}
	if stdin == nil {
		return errors.New("no standard input to read; pipe a gzip tar into the executor")
	}
	if f, ok := stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return errors.New("no data found.. don't forget to add the '--interactive, -i' flag (stdin is a terminal or device: pipe a gzip tar into the container)")
		}
	}
	return describeTarError(extractTar(stdin, dir), "pipe a gzip tar into the executor's standard input")
}

// describeTarError adds the fix to archive format errors; unsafe entries
// already explain themselves.
func describeTarError(err error, fix string) error {
	var unsafe *UnsafeEntryError
	var limit *LimitError
	switch {
	case err == nil, errors.As(err, &unsafe), errors.As(err, &limit):
		return err
	case errors.Is(err, errEmptyArchive):
		return fmt.Errorf("%w; %s", err, fix)
	}
	return fmt.Errorf("unpacking: %w; %s", err, fix)
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// fetchHTTPS downloads and unpacks an https:// tarball. Like Kaniko, every
// https:// context is a tarball, even one that names a git repository.
func fetchHTTPS(ctx context.Context, client *http.Client, rawURL, dir string) error {
	if client == nil {
		client = http.DefaultClient
	}
	hint := ""
	if u, err := url.Parse(rawURL); err == nil && (strings.HasSuffix(u.Path, ".git") || u.Fragment != "") {
		hint = " (https:// contexts are gzip tarballs; for a git repository use git://<host>/<path>, which is cloned over https)"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fmt.Errorf("invalid URL: %w", innerURLError(err))
	}
	resp, err := client.Do(req)
	if err != nil {
		// url.Error repeats the URL, query secrets included.
		return fmt.Errorf("downloading: %w; check the URL and that the executor can reach it%s", innerURLError(err), hint)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the server answered %s instead of 200 OK; pass the URL of a gzip tarball the executor may download%s", resp.Status, hint)
	}
	return describeTarError(extractTar(resp.Body, dir), "pass the URL of a gzip tarball"+hint)
}

func innerURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// RedactURL hides what may be secret in a context URL: the user info (a
// token is often the user name) and query values (signed URLs).
func RedactURL(raw string) string {
	scheme, rest, found := strings.Cut(raw, "://")
	if !found {
		return raw
	}
	authority, path, hasPath := strings.Cut(rest, "/")
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		authority = "xxxxx@" + authority[at+1:]
	}
	out := scheme + "://" + authority
	if hasPath {
		out += "/" + path
	}
	before, query, hasQuery := strings.Cut(out, "?")
	if !hasQuery {
		return out
	}
	query, fragment, hasFragment := strings.Cut(query, "#")
	params := strings.Split(query, "&")
	for i, p := range params {
		if key, _, ok := strings.Cut(p, "="); ok {
			params[i] = key + "=xxxxx"
		}
	}
	out = before + "?" + strings.Join(params, "&")
	if hasFragment {
		out += "#" + fragment
	}
	return out
}
