package buildcontext

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"

	"github.com/sirupsen/logrus"
)

// gitSource is a parsed git://host/path[#ref[#commit]] context.
type gitSource struct {
	url    string // clone URL, credentials removed
	origin string // scheme://host[:port]/, the scope credentials are sent to
	ref    string
	commit string
	creds  GitCredentials // from the URL's user info
}

// parseGitContext reads what follows "git://". Like Kaniko, the repository
// is fetched over GIT_PULL_METHOD (https unless "http"), not git's own
// protocol.
func parseGitContext(rest, pullMethod string) (gitSource, error) {
	parts := strings.Split(rest, "#")
	scheme := "https"
	if pullMethod == "http" {
		scheme = "http"
	}
	u, err := url.Parse(scheme + "://" + parts[0])
	if err != nil || u.Host == "" {
		return gitSource{}, errors.New("not a repository URL; use git://<host>/<path>[#<ref>[#<commit>]]")
	}
	src := gitSource{}
	if u.User != nil {
		src.creds.Username = u.User.Username()
		src.creds.Password, _ = u.User.Password()
		// Kept out of the URL so it is neither on git's command line nor in
		// the clone's .git/config, which may be copied into the image.
		u.User = nil
	}
	src.url = u.String()
	src.origin = scheme + "://" + u.Host + "/"
	if len(parts) > 1 {
		src.ref = parts[1]
	}
	if len(parts) > 2 {
		src.commit = parts[2]
	}
	if strings.HasPrefix(src.ref, "-") || strings.HasPrefix(src.commit, "-") {
		// They become git arguments and must not be read as options.
		return gitSource{}, errors.New("a #ref or #commit may not start with \"-\"; use git://<host>/<path>#<ref>#<commit>")
	}
	return src, nil
}

var commitHash = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// effective picks Kaniko's credentials: GIT_TOKEN as user name with an
// empty password, else GIT_USERNAME/GIT_PASSWORD, else the URL's user info.
func (c GitCredentials) effective(fromURL GitCredentials) (user, password string) {
	switch {
	case c.Token != "":
		return c.Token, ""
	case c.Username != "" || c.Password != "":
		return c.Username, c.Password
	}
	return fromURL.Username, fromURL.Password
}

// gitRunner runs the git command line with the credentials in its
// environment only, and scrubs them from anything it reports.
type gitRunner struct {
	env     []string
	dir     string
	secrets []string
}

func newGitRunner(req Request, src gitSource, caBundle string) *gitRunner {
	r := &gitRunner{}
	var config [][2]string
	if user, password := req.GitCredentials.effective(src.creds); user != "" || password != "" {
		header := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
		// Scoped to the repository's host, so submodules elsewhere never get them.
		config = append(config, [2]string{"http." + src.origin + ".extraHeader", "Authorization: " + header})
		r.secrets = append(r.secrets, user, password, header)
	}
	if req.Git.InsecureSkipTLS {
		config = append(config, [2]string{"http.sslVerify", "false"})
	}
	config = append(config, [2]string{"advice.detachedHead", "false"})
	var overrides []string
	if caBundle != "" {
		// The environment variable, because it beats http.sslCAInfo.
		overrides = append(overrides, "GIT_SSL_CAINFO="+caBundle)
	}
	r.env = gitEnv(os.Environ(), config, overrides...)
	return r
}

// gitEnv passes configuration through GIT_CONFIG_* so nothing secret is on
// a command line, and makes git fail instead of prompting.
func gitEnv(environ []string, config [][2]string, overrides ...string) []string {
	replaced := map[string]bool{"GIT_TERMINAL_PROMPT": true, "GIT_ASKPASS": true, "SSH_ASKPASS": true}
	// A CI job's own repository settings must not redirect the clone.
	for _, name := range []string{"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE"} {
		replaced[name] = true
	}
	for _, kv := range overrides {
		name, _, _ := strings.Cut(kv, "=")
		replaced[name] = true
	}
	env := make([]string, 0, len(environ)+2*len(config)+len(overrides)+2)
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !replaced[name] && !strings.HasPrefix(name, "GIT_CONFIG_") {
			env = append(env, kv)
		}
	}
	env = append(env, overrides...)
	env = append(env, "GIT_TERMINAL_PROMPT=0", fmt.Sprintf("GIT_CONFIG_COUNT=%d", len(config)))
	for i, kv := range config {
		env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", i, kv[0]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", i, kv[1]))
	}
	return env
}

func (r *gitRunner) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = r.dir
	cmd.Env = r.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if errors.Is(err, exec.ErrNotFound) {
		return "", errors.New("the git command is not installed; git:// contexts need git on PATH")
	}
	if err != nil {
		return "", fmt.Errorf("git %s failed: %s", args[0], r.scrub(r.explain(gitFailure(stderr.String(), err))))
	}
	return stdout.String(), nil
}

// gitFailure condenses git's stderr to one line: its error lines, or the
// last line when it printed none.
func gitFailure(stderr string, err error) string {
	var picked []string
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for _, line := range lines {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "fatal:") || strings.HasPrefix(line, "error:") || strings.HasPrefix(line, "remote:") {
			picked = append(picked, line)
		}
	}
	if len(picked) == 0 && lines[len(lines)-1] != "" {
		picked = lines[len(lines)-1:]
	}
	if len(picked) == 0 {
		return err.Error()
	}
	return strings.Join(picked, "; ")
}

// explain adds the fix for the failures users can act on.
func (r *gitRunner) explain(msg string) string {
	switch {
	case strings.Contains(msg, "terminal prompts disabled") || strings.Contains(msg, "Authentication failed"):
		if len(r.secrets) > 0 {
			return msg + " (the server refused the credentials given: check GIT_TOKEN, or GIT_USERNAME and GIT_PASSWORD)"
		}
		return msg + " (the server wants credentials: set GIT_TOKEN, or GIT_USERNAME and GIT_PASSWORD)"
	case strings.Contains(msg, "certificate"):
		return msg + " (trust the server's CA through SSL_CERT_DIR or SSL_CERT_FILE, or pass --git insecure-skip-tls=true)"
	}
	return msg
}

func (r *gitRunner) scrub(s string) string {
	for _, secret := range r.secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "xxxxx")
		}
	}
	return s
}

// fetchGit clones the repository into dir and checks out what the context
// names, following Kaniko's rules: --git branch=X (a branch, else a tag)
// decides the clone; #ref is fetched and checked out (a commit hash or any
// ref); #ref#commit checks out the commit after that.
func fetchGit(ctx context.Context, req Request, rest, dir string) error {
	src, err := parseGitContext(rest, req.GitPullMethod)
	if err != nil {
		return err
	}
	caBundle, cleanupBundle, err := goTrustBundle()
	if err != nil {
		return err
	}
	defer cleanupBundle()
	git := newGitRunner(req, src, caBundle)

	branch := ""
	if req.Git.Branch != "" {
		if branch, err = resolveBranch(ctx, git, src.url, req.Git.Branch); err != nil {
			return err
		}
	} else if short, ok := cutAny(src.ref, "refs/heads/", "refs/tags/"); ok {
		branch = short
	}
	// What to check out after cloning, and what must be fetched for it.
	fetchRef, checkout := "", ""
	switch {
	case src.ref == "", branch != "" && src.ref == "refs/heads/"+branch, branch != "" && src.ref == "refs/tags/"+branch:
	case commitHash.MatchString(src.ref):
		checkout = src.ref
	case req.Git.Branch != "":
		// Kaniko fetches the ref but keeps --git branch checked out.
		fetchRef = src.ref
	default:
		fetchRef, checkout = src.ref, "FETCH_HEAD"
	}
	if src.commit != "" {
		checkout = src.commit
	}

	args := []string{"clone", "--quiet"}
	if req.Git.SingleBranch {
		args = append(args, "--single-branch")
	}
	if branch != "" {
		args = append(args, "--branch", branch)
	}
	if checkout != "" {
		args = append(args, "--no-checkout")
	}
	logrus.Infof("Cloning %s", src.url)
	if _, err := git.run(ctx, append(args, "--", src.url, dir)...); err != nil {
		return err
	}
	git.dir = dir
	if fetchRef != "" {
		if _, err := git.run(ctx, "fetch", "--quiet", "origin", fetchRef); err != nil {
			return err
		}
	}
	if checkout != "" {
		if checkout != "FETCH_HEAD" {
			if err := ensureCommit(ctx, git, checkout); err != nil {
				return err
			}
		}
		if _, err := git.run(ctx, "checkout", "--quiet", "--detach", checkout); err != nil {
			return err
		}
	}
	if req.Git.RecurseSubmodules {
		if _, err := git.run(ctx, "submodule", "update", "--quiet", "--init", "--recursive"); err != nil {
			return err
		}
	}
	return nil
}

// ensureCommit fetches a commit the clone does not have (another branch
// under --git single-branch=true, or an unadvertised ref).
func ensureCommit(ctx context.Context, git *gitRunner, commit string) error {
	if _, err := git.run(ctx, "cat-file", "-e", commit+"^{commit}"); err == nil {
		return nil
	}
	_, err := git.run(ctx, "fetch", "--quiet", "origin", commit)
	return err
}

// resolveBranch looks --git branch=X up as a branch, then as a tag.
func resolveBranch(ctx context.Context, git *gitRunner, repo, name string) (string, error) {
	out, err := git.run(ctx, "ls-remote", "--", repo, "refs/heads/"+name, "refs/tags/"+name)
	if err != nil {
		return "", err
	}
	found := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if _, ref, ok := strings.Cut(line, "\t"); ok {
			found[ref] = true
		}
	}
	if found["refs/heads/"+name] || found["refs/tags/"+name] {
		return name, nil
	}
	return "", fmt.Errorf("--git branch=%s: invalid branch: %s is neither a branch nor a tag of the repository; pass an existing branch or tag name", name, name)
}

func cutAny(s string, prefixes ...string) (string, bool) {
	for _, p := range prefixes {
		if rest, ok := strings.CutPrefix(s, p); ok && rest != "" {
			return rest, true
		}
	}
	return "", false
}
