package buildcontext

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// fetchOK runs Fetch, fails the test on error and cleans up afterwards.
func fetchOK(t *testing.T, req Request) *Fetched {
	t.Helper()
	got, err := Fetch(context.Background(), req)
	if err != nil {
		t.Fatalf("Fetch(%s): %v", req.Context, err)
	}
	t.Cleanup(got.Cleanup)
	return got
}

// fetchErr runs Fetch expecting a one-line error containing every want.
func fetchErr(t *testing.T, req Request, wants ...string) string {
	t.Helper()
	got, err := Fetch(context.Background(), req)
	if err == nil {
		got.Cleanup()
		t.Fatalf("Fetch(%s) succeeded, want an error", req.Context)
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	for _, want := range wants {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	return msg
}

func TestTarFromFile(t *testing.T) {
	for _, compress := range []bool{true, false} {
		archive := filepath.Join(t.TempDir(), "context.tar.gz")
		if err := os.WriteFile(archive, sampleContext(t, compress), 0o644); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(t.TempDir(), "buildcontext")
		got := fetchOK(t, Request{Context: "tar://" + archive, Dir: dest})
		if got.Dir != dest {
			t.Errorf("Dir = %s, want exactly %s", got.Dir, dest)
		}
		checkSampleContext(t, got.Dir)
		makeWritable(t, dest)
		got.Cleanup()
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Errorf("Cleanup left %s behind (%v)", dest, err)
		}
	}
	fetchErr(t, Request{Context: "tar://" + filepath.Join(t.TempDir(), "missing.tar.gz")}, "--context tar://", "missing.tar.gz", "no such file")
}

func TestTarFromStdin(t *testing.T) {
	got := fetchOK(t, Request{Context: "tar://stdin", Stdin: bytes.NewReader(sampleContext(t, true)), SubPath: "deep"})
	readFile(t, filepath.Join(got.Dir, "er/file.txt"), "deep")
	makeWritable(t, filepath.Dir(got.Dir))

	fetchErr(t, Request{Context: "tar://stdin", Stdin: strings.NewReader("")}, "empty", "pipe a gzip tar")
	fetchErr(t, Request{Context: "tar://stdin", Stdin: strings.NewReader("plain text, no archive")}, "unpacking")

	// A terminal (any character device, as in Kaniko) means nothing was piped.
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	fetchErr(t, Request{Context: "tar://stdin", Stdin: devNull}, "no data found.. don't forget to add the '--interactive, -i' flag")
}

func TestTarRefusedArchiveLeavesNothing(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "ctx")
	archive := makeTar(t, true, tarEntry{name: "fine", body: "x"}, tarEntry{name: "../evil", body: "x"})
	fetchErr(t, Request{Context: "tar://stdin", Stdin: bytes.NewReader(archive), Dir: dest}, `tar entry "../evil"`, "refusing")
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("a refused archive left %s behind (%v)", dest, err)
	}
}

func TestDestinationDirectory(t *testing.T) {
	dest := t.TempDir()
	if err := os.WriteFile(filepath.Join(dest, "stale"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fetchErr(t, Request{Context: "tar://stdin", Stdin: bytes.NewReader(sampleContext(t, true)), Dir: dest}, "not empty", dest)

	// An existing empty directory is kept; Cleanup empties it.
	empty := t.TempDir()
	got := fetchOK(t, Request{Context: "tar://stdin", Stdin: bytes.NewReader(makeTar(t, true, tarEntry{name: "a", body: "a"})), Dir: empty})
	got.Cleanup()
	entries, err := os.ReadDir(empty)
	if err != nil || len(entries) != 0 {
		t.Errorf("after Cleanup %s holds %v (%v), want it empty", empty, entries, err)
	}
}

func TestSubPath(t *testing.T) {
	outside := t.TempDir()
	archive := func() *bytes.Reader {
		return bytes.NewReader(makeTar(t, true,
			tarEntry{name: "app/Dockerfile", body: "FROM scratch"},
			tarEntry{name: "file", body: "f"},
			tarEntry{name: "escape", typ: tar.TypeSymlink, link: outside},
		))
	}
	got := fetchOK(t, Request{Context: "tar://stdin", Stdin: archive(), SubPath: "app"})
	readFile(t, filepath.Join(got.Dir, "Dockerfile"), "FROM scratch")

	fetchErr(t, Request{Context: "tar://stdin", Stdin: archive(), SubPath: "nope"}, "--context-sub-path nope", "no such directory")
	fetchErr(t, Request{Context: "tar://stdin", Stdin: archive(), SubPath: "../.."}, "--context-sub-path ../..", "outside")
	fetchErr(t, Request{Context: "tar://stdin", Stdin: archive(), SubPath: "escape"}, "--context-sub-path escape", "outside")
	fetchErr(t, Request{Context: "tar://stdin", Stdin: archive(), SubPath: "file"}, "not a directory")
}

func TestUnknownSchemes(t *testing.T) {
	fetchErr(t, Request{Context: "http://example.com/ctx.tar.gz"}, UnknownPrefixError)
	fetchErr(t, Request{Context: "ftp://example.com/ctx.tar.gz"}, UnknownPrefixError)
}

// tlsServer serves handler over TLS with a certificate from a throwaway CA
// and returns a client that trusts only that CA.
func tlsServer(t *testing.T, handler http.Handler) (*httptest.Server, *http.Client, *testenv.CA) {
	t.Helper()
	srv, ca := testenv.StartTLSServer(t, handler)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
	return srv, client, ca
}

func TestHTTPSTarball(t *testing.T) {
	archive := sampleContext(t, true)
	srv, client, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ctx.tar.gz" {
			http.NotFound(w, r)
			return
		}
		w.Write(archive)
	}))
	got := fetchOK(t, Request{Context: srv.URL + "/ctx.tar.gz", HTTPClient: client})
	checkSampleContext(t, got.Dir)
	makeWritable(t, got.Dir)

	fetchErr(t, Request{Context: srv.URL + "/missing.tar.gz", HTTPClient: client}, "404 Not Found", "instead of 200 OK")
	// Signed URLs carry secrets in the query; they never reach the error.
	msg := fetchErr(t, Request{Context: srv.URL + "/missing.tar.gz?X-Amz-Signature=topsecret&X-Amz-Credential=alsosecret", HTTPClient: client}, "404", "X-Amz-Signature=xxxxx")
	if strings.Contains(msg, "topsecret") || strings.Contains(msg, "alsosecret") {
		t.Errorf("error leaks the signed URL: %q", msg)
	}
	// Kaniko treats https:// as a tarball even for a git repository.
	fetchErr(t, Request{Context: srv.URL + "/org/repo.git", HTTPClient: client}, "404", "git://")
	// The default client does not trust the private CA.
	fetchErr(t, Request{Context: srv.URL + "/ctx.tar.gz"}, "certificate", "downloading")
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"git://ghp_token@github.com/org/repo.git#refs/heads/main": "git://xxxxx@github.com/org/repo.git#refs/heads/main",
		"git://user:pass@host/repo":                               "git://xxxxx@host/repo",
		"https://host/ctx.tar.gz?sig=abc&plain":                   "https://host/ctx.tar.gz?sig=xxxxx&plain",
		"tar:///abs/ctx.tar.gz":                                   "tar:///abs/ctx.tar.gz",
		"tar://stdin":                                             "tar://stdin",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
