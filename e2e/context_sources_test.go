package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// copyContextDockerfile copies the whole context, so the image shows which
// files the context held after .dockerignore.
const copyContextDockerfile = "FROM busybox\nCOPY . /ctx/\n"

// contextFiles is a context whose .dockerignore drops skip.txt.
var contextFiles = map[string]string{
	"Dockerfile":    copyContextDockerfile,
	"app.txt":       "from the context\n",
	"skip.txt":      "must be ignored\n",
	".dockerignore": "skip.txt\n",
}

// tarEntry is one archive member: a regular file unless link is set.
type tarEntry struct {
	name, content, link string
}

// filesOf lists a map of files as archive members, sorted.
func filesOf(files map[string]string, prefix string) []tarEntry {
	var entries []tarEntry
	for name, content := range files {
		entries = append(entries, tarEntry{name: prefix + name, content: content})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	return entries
}

// gzipTar is the gzip-compressed tarball Kaniko's tar:// and https://
// contexts take.
func gzipTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: 0o644, ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg, Size: int64(len(e.content))}
		if e.link != "" {
			hdr = &tar.Header{Name: e.name, Mode: 0o777, ModTime: hdr.ModTime, Typeflag: tar.TypeSymlink, Linkname: e.link}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeFiles makes a directory every user can read holding files.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := testenv.ReadableTempDir(t)
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// assertContextFiles checks that the pushed image's /ctx holds exactly
// want (path under /ctx -> content), ignoring git metadata.
func assertContextFiles(t *testing.T, reg *testenv.Registry, dest string, want map[string]string) {
	t.Helper()
	img, _ := pulledImage(t, reg, dest)
	got := map[string]string{}
	for path, f := range imageFiles(t, img, "ctx/") {
		rel := strings.TrimPrefix(path, "ctx/")
		if !slices.Contains(strings.Split(rel, "/"), ".git") {
			got[rel] = f.content
		}
	}
	for name, content := range want {
		if got[name] != content {
			t.Errorf("/ctx/%s = %q, want %q", name, got[name], content)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("/ctx/%s is in the image but not expected (ignored or from another ref?)", name)
		}
	}
}

// contextWant is what COPY . /ctx/ of contextFiles yields.
func contextWant() map[string]string {
	return map[string]string{"Dockerfile": copyContextDockerfile, "app.txt": "from the context\n", ".dockerignore": "skip.txt\n"}
}

// TestTarContext: tar:// from a file, and tar://stdin piped in with
// --context-sub-path, as `kubectl run --stdin` jobs do.
func TestTarContext(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	tgz := gzipTar(t, filesOf(contextFiles, ""))
	nested := gzipTar(t, append(filesOf(contextFiles, "app/"), tarEntry{name: "other.txt", content: "outside the sub-path\n"}))

	forEachMode(t, func(t *testing.T, m mode) {
		t.Run("file", func(t *testing.T) {
			path := filepath.Join(m.dir(t), "context.tar.gz")
			if err := os.WriteFile(path, tgz, 0o644); err != nil {
				t.Fatal(err)
			}
			dest := reg.Ref("e2e/ctx/" + m.name + "/tar-file:v1")
			m.run(t, m.stateDir(t), mirrorArgs("tar://"+path, reg, dest)).mustSucceed(t)
			assertContextFiles(t, reg, dest, contextWant())
		})
		t.Run("stdin", func(t *testing.T) {
			dest := reg.Ref("e2e/ctx/" + m.name + "/tar-stdin:v1")
			m.stdin = bytes.NewReader(nested)
			args := append(mirrorArgs("tar://stdin", reg, dest), "--context-sub-path", "app")
			m.run(t, m.stateDir(t), args).mustSucceed(t)
			assertContextFiles(t, reg, dest, contextWant())
		})
	})
}

// TestTarContextRefusesEscapes: an archive that writes outside the context
// fails with one line and builds nothing.
func TestTarContextRefusesEscapes(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	outside := testenv.ReadableTempDir(t)
	cases := map[string][]tarEntry{
		"dot-dot": {{name: "Dockerfile", content: copyContextDockerfile}, {name: "../escaped.txt", content: "x"}},
		"absolute-symlink": {
			{name: "Dockerfile", content: copyContextDockerfile},
			{name: "link", link: outside},
			{name: "link/escaped.txt", content: "x"},
		},
	}
	m := mode{name: "root"}
	testenv.RequireRoot(t)
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			repo := "e2e/ctx/refused-" + name
			m := m
			m.stdin = bytes.NewReader(gzipTar(t, entries))
			r := m.run(t, m.stateDir(t), mirrorArgs("tar://stdin", reg, reg.Ref(repo+":v1")))
			r.assertOneLineFailure(t, "refusing the archive")
			assertNothingPushed(t, reg, repo)
			if leftovers, _ := os.ReadDir(outside); len(leftovers) > 0 {
				t.Errorf("the archive wrote outside the context: %v", leftovers)
			}
		})
	}
}

// TestHTTPSContext: a gzip tarball from a TLS server whose private CA the
// job trusts through SSL_CERT_FILE, as Go programs (and Kaniko) do.
func TestHTTPSContext(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	tgz := gzipTar(t, filesOf(contextFiles, ""))
	srv, ca := testenv.StartTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/context.tar.gz" {
			http.NotFound(w, r)
			return
		}
		w.Write(tgz)
	}))

	forEachMode(t, func(t *testing.T, m mode) {
		dest := reg.Ref("e2e/ctx/" + m.name + "/https:v1")
		m.run(t, m.stateDir(t), mirrorArgs(srv.URL+"/context.tar.gz", reg, dest), "SSL_CERT_FILE="+ca.CertFile).mustSucceed(t)
		assertContextFiles(t, reg, dest, contextWant())
	})

	t.Run("untrusted-ca", func(t *testing.T) {
		t.Parallel()
		testenv.RequireRoot(t)
		m, repo := mode{name: "root"}, "e2e/ctx/https-untrusted"
		r := m.run(t, m.stateDir(t), mirrorArgs(srv.URL+"/context.tar.gz", reg, reg.Ref(repo+":v1")))
		r.assertOneLineFailure(t, "certificate")
		assertNothingPushed(t, reg, repo)
	})
	t.Run("not-found", func(t *testing.T) {
		t.Parallel()
		testenv.RequireRoot(t)
		m, repo := mode{name: "root"}, "e2e/ctx/https-404"
		r := m.run(t, m.stateDir(t), mirrorArgs(srv.URL+"/missing.tar.gz", reg, reg.Ref(repo+":v1")), "SSL_CERT_FILE="+ca.CertFile)
		r.assertOneLineFailure(t, "404")
		assertNothingPushed(t, reg, repo)
	})
}

// TestDockerignoreForms: <Dockerfile>.dockerignore next to --dockerfile wins
// over the context's .dockerignore, as in Kaniko.
func TestDockerignoreForms(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	files := map[string]string{
		"app.txt":                       "from the context\n",
		"skip.txt":                      "ignored by the context's .dockerignore\n",
		"secret.txt":                    "ignored by build/Dockerfile.dockerignore\n",
		".dockerignore":                 "skip.txt\n",
		"build/Dockerfile":              copyContextDockerfile,
		"build/Dockerfile.plain":        copyContextDockerfile,
		"build/Dockerfile.dockerignore": "secret.txt\nbuild\n",
	}
	ctx := writeFiles(t, files)

	forEachMode(t, func(t *testing.T, m mode) {
		t.Run("context-dockerignore", func(t *testing.T) {
			dest := reg.Ref("e2e/ctx/" + m.name + "/ignore-context:v1")
			args := append(mirrorArgs(ctx, reg, dest), "--dockerfile", filepath.Join(ctx, "build", "Dockerfile.plain"))
			m.run(t, m.stateDir(t), args).mustSucceed(t)
			assertContextFiles(t, reg, dest, map[string]string{
				"app.txt": files["app.txt"], "secret.txt": files["secret.txt"], ".dockerignore": files[".dockerignore"],
				"build/Dockerfile": files["build/Dockerfile"], "build/Dockerfile.plain": copyContextDockerfile,
				"build/Dockerfile.dockerignore": files["build/Dockerfile.dockerignore"],
			})
		})
		t.Run("dockerfile-dockerignore", func(t *testing.T) {
			dest := reg.Ref("e2e/ctx/" + m.name + "/ignore-dockerfile:v1")
			args := append(mirrorArgs(ctx, reg, dest), "--dockerfile", "build/Dockerfile")
			m.run(t, m.stateDir(t), args).mustSucceed(t)
			assertContextFiles(t, reg, dest, map[string]string{
				"app.txt": files["app.txt"], "skip.txt": files["skip.txt"], ".dockerignore": files[".dockerignore"],
			})
		})
	})
}
