package buildcontext

import (
	"bytes"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/kilnbuild/kiln/flagmap"
)

// gitRepos holds bare repositories made for the tests and the commits a
// context may name.
type gitRepos struct {
	root                           string // GIT_PROJECT_ROOT
	first, main, feature, pullHead string // commit hashes
}

func requireGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is not installed (the Debian package git, see hack/install-deps.sh): %v", err)
	}
}

// gitIn runs git in dir with a fixed identity and returns its trimmed output.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=kiln test", "-c", "user.email=test@kiln.invalid", "-c", "init.defaultBranch=main"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func commitFile(t *testing.T, dir, name, content, message string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	gitIn(t, dir, "add", name)
	gitIn(t, dir, "commit", "--quiet", "-m", message)
	return gitIn(t, dir, "rev-parse", "HEAD")
}

// publish copies every ref of the work repository into <root>/<name>.git.
func publish(t *testing.T, work, root, name string) {
	t.Helper()
	bare := filepath.Join(root, name+".git")
	gitIn(t, root, "init", "--quiet", "--bare", "-b", "main", bare)
	gitIn(t, work, "push", "--quiet", "--mirror", bare)
}

// makeGitRepos creates app.git (branches main and feature, tag v1, a pull
// request ref), lib.git, and super.git whose submodule lib points at
// ../lib.git.
func makeGitRepos(t *testing.T) *gitRepos {
	t.Helper()
	requireGit(t)
	repos := &gitRepos{root: t.TempDir()}
	app := t.TempDir()
	gitIn(t, app, "init", "--quiet")
	commitFile(t, app, "sub/app.txt", "in sub", "sub")
	repos.first = commitFile(t, app, "Dockerfile", "v1", "first")
	gitIn(t, app, "tag", "-a", "v1", "-m", "release v1")
	gitIn(t, app, "checkout", "--quiet", "-b", "feature")
	repos.feature = commitFile(t, app, "Dockerfile", "feature", "feature")
	gitIn(t, app, "checkout", "--quiet", "--detach", repos.first)
	repos.pullHead = commitFile(t, app, "Dockerfile", "pull", "pull request")
	gitIn(t, app, "update-ref", "refs/pull/7/head", repos.pullHead)
	gitIn(t, app, "checkout", "--quiet", "main")
	repos.main = commitFile(t, app, "Dockerfile", "main", "main")
	publish(t, app, repos.root, "app")

	lib := t.TempDir()
	gitIn(t, lib, "init", "--quiet")
	libHead := commitFile(t, lib, "lib.txt", "lib", "lib")
	publish(t, lib, repos.root, "lib")

	super := t.TempDir()
	gitIn(t, super, "init", "--quiet")
	if err := os.WriteFile(filepath.Join(super, ".gitmodules"), []byte("[submodule \"lib\"]\n\tpath = lib\n\turl = ../lib.git\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitIn(t, super, "add", ".gitmodules")
	gitIn(t, super, "update-index", "--add", "--cacheinfo", "160000,"+libHead+",lib")
	commitFile(t, super, "Dockerfile", "super", "super with lib")
	publish(t, super, repos.root, "super")
	return repos
}

// gitHandler serves the repositories with git's smart HTTP backend. When
// user or password is set, requests without those credentials get 401.
func gitHandler(t *testing.T, root, user, password string) http.Handler {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("git is not installed: %v", err)
	}
	backend := &cgi.Handler{
		Path:   gitPath,
		Args:   []string{"http-backend"},
		Env:    []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
		Stderr: io.Discard,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user != "" || password != "" {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		backend.ServeHTTP(w, r)
	})
}

// gitContext turns a server URL into Kaniko's git:// form.
func gitContext(serverURL, repoPath string) string {
	_, hostPort, _ := strings.Cut(serverURL, "://")
	return "git://" + hostPort + "/" + repoPath
}

func TestGitRefsOverHTTP(t *testing.T) {
	repos := makeGitRepos(t)
	srv := httptest.NewServer(gitHandler(t, repos.root, "", ""))
	defer srv.Close()
	app := gitContext(srv.URL, "app.git")

	cases := []struct {
		name, context, want string
		git                 flagmap.GitOptions
	}{
		{"default branch", app, "main", flagmap.GitOptions{}},
		{"--git branch", app, "feature", flagmap.GitOptions{Branch: "feature"}},
		{"--git branch names a tag", app, "v1", flagmap.GitOptions{Branch: "v1", SingleBranch: true}},
		{"#refs/heads", app + "#refs/heads/feature", "feature", flagmap.GitOptions{}},
		{"#refs/tags", app + "#refs/tags/v1", "v1", flagmap.GitOptions{}},
		{"#commit", app + "#" + repos.first, "v1", flagmap.GitOptions{}},
		{"#pull request ref", app + "#refs/pull/7/head", "pull", flagmap.GitOptions{}},
		{"#ref#commit", app + "#refs/heads/main#" + repos.first, "v1", flagmap.GitOptions{}},
		{"single branch, commit elsewhere", app + "#" + repos.main, "main", flagmap.GitOptions{Branch: "feature", SingleBranch: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := fetchOK(t, Request{Context: tc.context, Git: tc.git, GitPullMethod: "http"})
			readFile(t, filepath.Join(got.Dir, "Dockerfile"), tc.want)
			readFile(t, filepath.Join(got.Dir, "sub/app.txt"), "in sub")
		})
	}

	t.Run("sub-path", func(t *testing.T) {
		got := fetchOK(t, Request{Context: app, SubPath: "sub", GitPullMethod: "http"})
		readFile(t, filepath.Join(got.Dir, "app.txt"), "in sub")
		fetchErr(t, Request{Context: app, SubPath: "absent", GitPullMethod: "http"}, "--context-sub-path absent")
	})
	t.Run("errors", func(t *testing.T) {
		fetchErr(t, Request{Context: app, Git: flagmap.GitOptions{Branch: "nope"}, GitPullMethod: "http"}, "--git branch=nope: invalid branch", "pass an existing branch or tag")
		fetchErr(t, Request{Context: app + "#" + strings.Repeat("0", 40), GitPullMethod: "http"}, "git fetch failed")
		fetchErr(t, Request{Context: gitContext(srv.URL, "missing.git"), GitPullMethod: "http"}, "--context git://", "missing.git", "git clone failed")
		fetchErr(t, Request{Context: app + "#refs/heads/gone", GitPullMethod: "http"}, "gone")
		fetchErr(t, Request{Context: app + "#--upload-pack=touch", GitPullMethod: "http"}, "may not start with")
	})
}

func TestGitSubmodules(t *testing.T) {
	repos := makeGitRepos(t)
	srv := httptest.NewServer(gitHandler(t, repos.root, "", ""))
	defer srv.Close()
	super := gitContext(srv.URL, "super.git")

	got := fetchOK(t, Request{Context: super, Git: flagmap.GitOptions{RecurseSubmodules: true}, GitPullMethod: "http"})
	readFile(t, filepath.Join(got.Dir, "lib/lib.txt"), "lib")

	without := fetchOK(t, Request{Context: super, GitPullMethod: "http"})
	readFile(t, filepath.Join(without.Dir, "Dockerfile"), "super")
	if _, err := os.Stat(filepath.Join(without.Dir, "lib/lib.txt")); !os.IsNotExist(err) {
		t.Errorf("submodule checked out without recurse-submodules=true (%v)", err)
	}
}

// captureLogs sends logrus output to a buffer for the rest of the test.
func captureLogs(t *testing.T) *bytes.Buffer {
	var buf bytes.Buffer
	out, level := logrus.StandardLogger().Out, logrus.GetLevel()
	logrus.SetOutput(&buf)
	logrus.SetLevel(logrus.TraceLevel)
	t.Cleanup(func() { logrus.SetOutput(out); logrus.SetLevel(level) })
	return &buf
}

// assertNoSecret fails when a secret shows up in the clone's git config
// (which COPY . may put into the image) or in text.
func assertNoSecret(t *testing.T, secret, where, text string) {
	t.Helper()
	if strings.Contains(text, secret) {
		t.Errorf("%s leaks the secret: %q", where, text)
	}
}

func TestGitCredentials(t *testing.T) {
	const token, password = "tok-SECRET-1234", "pw-SECRET-5678"
	repos := makeGitRepos(t)
	logs := captureLogs(t)
	tokenSrv := httptest.NewServer(gitHandler(t, repos.root, token, ""))
	defer tokenSrv.Close()
	passwordSrv := httptest.NewServer(gitHandler(t, repos.root, "kiln", password))
	defer passwordSrv.Close()

	gitConfigOf := func(dir string) string {
		data, err := os.ReadFile(filepath.Join(dir, ".git/config"))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}

	t.Run("none given", func(t *testing.T) {
		fetchErr(t, Request{Context: gitContext(tokenSrv.URL, "app.git"), GitPullMethod: "http"}, "git clone failed", "GIT_TOKEN")
	})
	t.Run("GIT_TOKEN wins over GIT_USERNAME/GIT_PASSWORD", func(t *testing.T) {
		creds := GitCredentials{Token: token, Username: "ignored", Password: "ignored"}
		got := fetchOK(t, Request{Context: gitContext(tokenSrv.URL, "super.git"), GitCredentials: creds, GitPullMethod: "http", Git: flagmap.GitOptions{RecurseSubmodules: true}})
		readFile(t, filepath.Join(got.Dir, "lib/lib.txt"), "lib")
		assertNoSecret(t, token, ".git/config", gitConfigOf(got.Dir))
	})
	t.Run("GIT_USERNAME and GIT_PASSWORD", func(t *testing.T) {
		got := fetchOK(t, Request{Context: gitContext(passwordSrv.URL, "app.git"), GitCredentials: GitCredentials{Username: "kiln", Password: password}, GitPullMethod: "http"})
		readFile(t, filepath.Join(got.Dir, "Dockerfile"), "main")
	})
	t.Run("embedded in the URL", func(t *testing.T) {
		context := strings.Replace(gitContext(passwordSrv.URL, "app.git"), "git://", "git://kiln:"+password+"@", 1)
		got := fetchOK(t, Request{Context: context, GitPullMethod: "http", Git: flagmap.GitOptions{Branch: "feature"}})
		readFile(t, filepath.Join(got.Dir, "Dockerfile"), "feature")
		assertNoSecret(t, password, ".git/config", gitConfigOf(got.Dir))
	})
	t.Run("refused", func(t *testing.T) {
		const wrong = "wrong-SECRET-9999"
		msg := fetchErr(t, Request{Context: gitContext(passwordSrv.URL, "app.git"), GitCredentials: GitCredentials{Username: "kiln", Password: wrong}, GitPullMethod: "http"}, "git clone failed", "refused the credentials")
		assertNoSecret(t, wrong, "the error", msg)
		context := strings.Replace(gitContext(passwordSrv.URL, "app.git#refs/heads/feature"), "git://", "git://"+wrong+"@", 1)
		msg = fetchErr(t, Request{Context: context, GitPullMethod: "http", Git: flagmap.GitOptions{Branch: "main"}}, "git ls-remote failed")
		assertNoSecret(t, wrong, "the error", msg)
	})
	for _, secret := range []string{token, password, "wrong-SECRET"} {
		assertNoSecret(t, secret, "the logs", logs.String())
	}
	if !strings.Contains(logs.String(), "Cloning") {
		t.Errorf("logs were not captured: %q", logs.String())
	}
}

func TestGitOverHTTPSTrustsGoCAs(t *testing.T) {
	repos := makeGitRepos(t)
	srv, _, ca := tlsServer(t, gitHandler(t, repos.root, "", ""))
	app := gitContext(srv.URL, "app.git")

	// Unknown CA: refused, unless TLS verification is switched off.
	t.Setenv("SSL_CERT_DIR", t.TempDir())
	fetchErr(t, Request{Context: app}, "git clone failed", "insecure-skip-tls")
	got := fetchOK(t, Request{Context: app, Git: flagmap.GitOptions{InsecureSkipTLS: true}})
	readFile(t, filepath.Join(got.Dir, "Dockerfile"), "main")

	// A CA that Go would trust through SSL_CERT_DIR (as in Kaniko's
	// <kaniko dir>/ssl/certs) is trusted by git too.
	t.Setenv("SSL_CERT_DIR", filepath.Dir(ca.CertFile))
	got = fetchOK(t, Request{Context: app + "#refs/tags/v1"})
	readFile(t, filepath.Join(got.Dir, "Dockerfile"), "v1")
}

func TestGitEnv(t *testing.T) {
	env := gitEnv(
		[]string{"PATH=/bin", "GIT_DIR=/ci/.git", "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.proxy", "GIT_SSL_CAINFO=/old.pem", "GIT_ASKPASS=/bin/prompt"},
		[][2]string{{"http.sslVerify", "false"}},
		"GIT_SSL_CAINFO=/new.pem",
	)
	want := []string{"PATH=/bin", "GIT_SSL_CAINFO=/new.pem", "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.sslVerify", "GIT_CONFIG_VALUE_0=false"}
	if strings.Join(env, " ") != strings.Join(want, " ") {
		t.Errorf("gitEnv = %q, want %q", env, want)
	}
}
