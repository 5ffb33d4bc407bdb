package e2e

import (
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// gitFixture is a directory of bare repositories served over git's smart
// HTTP protocol, and the commits the tests name.
type gitFixture struct {
	root             string
	v1Commit, server string // server: "127.0.0.1:PORT"
}

// git runs git in dir with a fixed identity and no user configuration.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=e2e", "-c", "user.email=e2e@kiln.invalid", "-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commitAll writes files into the work tree and commits them.
func commitAll(t *testing.T, work string, files map[string]string, message string) string {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(work, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(t, work, "add", "--all")
	git(t, work, "commit", "--quiet", "-m", message)
	return git(t, work, "rev-parse", "HEAD")
}

// newGitFixture makes app.git (main, branch feature, tag v1, a sub/
// directory with its own Dockerfile) and super.git with lib.git as a
// submodule, served by git http-backend; user/password, when set, are
// required.
func newGitFixture(t *testing.T, user, password string) *gitFixture {
	t.Helper()
	testenv.RequireCommands(t, "git")
	f := &gitFixture{root: t.TempDir()}
	bare := func(work, name string) {
		path := filepath.Join(f.root, name+".git")
		git(t, f.root, "init", "--quiet", "--bare", path)
		git(t, work, "push", "--quiet", "--mirror", path)
	}

	app := t.TempDir()
	git(t, app, "init", "--quiet")
	f.v1Commit = commitAll(t, app, map[string]string{
		"Dockerfile":     copyContextDockerfile,
		"ref.txt":        "v1\n",
		"sub/Dockerfile": copyContextDockerfile,
		"sub/sub.txt":    "in the sub-path\n",
	}, "v1")
	git(t, app, "tag", "v1")
	git(t, app, "checkout", "--quiet", "-b", "feature")
	commitAll(t, app, map[string]string{"ref.txt": "feature\n"}, "feature")
	git(t, app, "checkout", "--quiet", "main")
	commitAll(t, app, map[string]string{"ref.txt": "main\n"}, "main")
	bare(app, "app")

	lib := t.TempDir()
	git(t, lib, "init", "--quiet")
	commitAll(t, lib, map[string]string{"lib.txt": "from the submodule\n"}, "lib")
	bare(lib, "lib")

	super := t.TempDir()
	git(t, super, "init", "--quiet")
	git(t, super, "submodule", "--quiet", "add", filepath.Join(f.root, "lib.git"), "lib")
	git(t, super, "config", "--file", ".gitmodules", "submodule.lib.url", "../lib.git")
	commitAll(t, super, map[string]string{"Dockerfile": copyContextDockerfile}, "super")
	bare(super, "super")

	backend := &cgi.Handler{
		Path:   "git",
		Args:   []string{"http-backend"},
		Env:    []string{"GIT_PROJECT_ROOT=" + f.root, "GIT_HTTP_EXPORT_ALL=1"},
		Stderr: io.Discard,
	}
	if path, err := exec.LookPath("git"); err == nil {
		backend.Path = path
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, _ := r.BasicAuth(); (user != "" || password != "") && (u != user || p != password) {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.server = strings.TrimPrefix(srv.URL, "http://")
	return f
}

// context is Kaniko's git:// form for repo.git, with #ref parts appended.
func (f *gitFixture) context(repo string, refs ...string) string {
	return strings.Join(append([]string{"git://" + f.server + "/" + repo + ".git"}, refs...), "#")
}

// gitPullHTTP makes the executor clone over plain HTTP, Kaniko's GIT_PULL_METHOD.
const gitPullHTTP = "GIT_PULL_METHOD=http"

func TestGitContext(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	f := newGitFixture(t, "", "")
	appFiles := func(ref string) map[string]string {
		return map[string]string{"Dockerfile": copyContextDockerfile, "ref.txt": ref + "\n", "sub/Dockerfile": copyContextDockerfile, "sub/sub.txt": "in the sub-path\n"}
	}
	cases := []struct {
		name    string
		context string
		args    []string
		want    map[string]string
	}{
		{name: "default-branch", context: f.context("app"), want: appFiles("main")},
		{name: "branch-ref", context: f.context("app", "refs/heads/feature"), want: appFiles("feature")},
		{name: "git-branch-option", context: f.context("app"), args: []string{"--git", "branch=feature", "--git", "single-branch=true"}, want: appFiles("feature")},
		{name: "tag", context: f.context("app", "refs/tags/v1"), want: appFiles("v1")},
		{name: "commit", context: f.context("app", f.v1Commit), want: appFiles("v1")},
		{name: "ref-and-commit", context: f.context("app", "refs/heads/main", f.v1Commit), want: appFiles("v1")},
		{
			name: "sub-path", context: f.context("app", "refs/heads/feature"), args: []string{"--context-sub-path", "sub"},
			want: map[string]string{"Dockerfile": copyContextDockerfile, "sub.txt": "in the sub-path\n"},
		},
		{
			name: "submodules", context: f.context("super"), args: []string{"--git", "recurse-submodules=true"},
			want: map[string]string{"Dockerfile": copyContextDockerfile, ".gitmodules": "", "lib/lib.txt": "from the submodule\n"},
		},
	}
	testenv.RequireRoot(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m := mode{name: "root"}
			dest := reg.Ref("e2e/git/" + c.name + ":v1")
			args := append(mirrorArgs(c.context, reg, dest), c.args...)
			m.run(t, m.stateDir(t), args, gitPullHTTP).mustSucceed(t)
			if _, ok := c.want[".gitmodules"]; ok {
				c.want[".gitmodules"] = gitmodulesOf(t, f)
			}
			assertContextFiles(t, reg, dest, c.want)
		})
	}

	t.Run("rootless", func(t *testing.T) {
		t.Parallel()
		testenv.RequireUserNamespaces(t)
		m := mode{name: "rootless", rootless: true, user: testenv.NonRootUser(t)}
		dest := reg.Ref("e2e/git/rootless:v1")
		args := append(mirrorArgs(f.context("app", "refs/tags/v1"), reg, dest), "--context-sub-path", "sub")
		m.run(t, m.stateDir(t), args, gitPullHTTP).mustSucceed(t)
		assertContextFiles(t, reg, dest, map[string]string{"Dockerfile": copyContextDockerfile, "sub.txt": "in the sub-path\n"})
	})

	t.Run("missing-repository", func(t *testing.T) {
		t.Parallel()
		m, repo := mode{name: "root"}, "e2e/git/missing"
		r := m.run(t, m.stateDir(t), mirrorArgs(f.context("does-not-exist"), reg, reg.Ref(repo+":v1")), gitPullHTTP)
		r.assertOneLineFailure(t, "does-not-exist.git")
		assertNothingPushed(t, reg, repo)
	})
	t.Run("missing-branch", func(t *testing.T) {
		t.Parallel()
		m, repo := mode{name: "root"}, "e2e/git/missing-branch"
		args := append(mirrorArgs(f.context("app"), reg, reg.Ref(repo+":v1")), "--git", "branch=nope")
		r := m.run(t, m.stateDir(t), args, gitPullHTTP)
		r.assertOneLineFailure(t, "invalid branch")
		assertNothingPushed(t, reg, repo)
	})
}

// gitmodulesOf reads super.git's .gitmodules as committed.
func gitmodulesOf(t *testing.T, f *gitFixture) string {
	t.Helper()
	return git(t, filepath.Join(f.root, "super.git"), "show", "HEAD:.gitmodules") + "\n"
}

// TestGitCredentials: GIT_TOKEN (sent as the user name) and
// GIT_USERNAME/GIT_PASSWORD open a protected repository; without them the
// clone fails in one line; the secret shows up nowhere.
func TestGitCredentials(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	const token = "tok-e2e-5be1c0ffee"
	const password = "pw-e2e-9d7ab1e55"
	byToken := newGitFixture(t, token, "")
	byPassword := newGitFixture(t, "ci-bot", password)
	testenv.RequireRoot(t)

	cases := []struct {
		name    string
		fixture *gitFixture
		env     []string
		secret  string
		ok      bool
	}{
		{name: "token", fixture: byToken, env: []string{"GIT_TOKEN=" + token}, secret: token, ok: true},
		{name: "password", fixture: byPassword, env: []string{"GIT_USERNAME=ci-bot", "GIT_PASSWORD=" + password}, secret: password, ok: true},
		{name: "wrong-password", fixture: byPassword, env: []string{"GIT_USERNAME=ci-bot", "GIT_PASSWORD=" + password + "-wrong"}, secret: password},
		{name: "none", fixture: byToken},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m, repo := mode{name: "root"}, "e2e/git-auth/"+c.name
			dest := reg.Ref(repo + ":v1")
			args := append(mirrorArgs(c.fixture.context("app"), reg, dest), "--build-arg", "UNUSED=1")
			r := m.run(t, m.stateDir(t), args, append(c.env, gitPullHTTP)...)
			if c.ok {
				r.mustSucceed(t)
				assertContextFiles(t, reg, dest, map[string]string{
					"Dockerfile": copyContextDockerfile, "ref.txt": "main\n", "sub/Dockerfile": copyContextDockerfile, "sub/sub.txt": "in the sub-path\n",
				})
				assertSecretAbsent(t, reg, dest, c.secret)
			} else {
				r.assertOneLineFailure(t, "app.git")
				assertNothingPushed(t, reg, repo)
			}
			if c.secret != "" && strings.Contains(r.stdout+r.stderr, c.secret) {
				t.Errorf("the executor's output reveals the git secret")
			}
		})
	}
}
