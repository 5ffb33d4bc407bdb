package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kilnbuild/kiln/flagmap"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

type fakeEngine struct {
	calls    []string
	inv      *flagmap.Invocation
	buildErr error
	stdin    string
}

func (e *fakeEngine) Build(ctx context.Context, inv *flagmap.Invocation) error {
	e.calls = append(e.calls, "build")
	e.inv = inv
	in, _ := io.ReadAll(Stdin(ctx))
	e.stdin = string(in)
	return e.buildErr
}

// resolvingEngine also resolves the context, so the cli must call it before the name-file check.
type resolvingEngine struct{ fakeEngine }

func (e *resolvingEngine) ResolveContext(_ context.Context, inv *flagmap.Invocation) error {
	e.calls = append(e.calls, "resolve")
	if inv.Options.Context == "missing" {
		return errors.New("error resolving source context: missing does not exist")
	}
	return nil
}

type fakeMigrator struct {
	dryRunCode int
	scanned    []string
}

func (m *fakeMigrator) DryRun(_ context.Context, inv *flagmap.Invocation, out io.Writer) int {
	io.WriteString(out, "dry-run report for "+strings.Join(inv.Options.Destinations, ",")+"\n")
	return m.dryRunCode
}

func (m *fakeMigrator) ScanCommand() *cobra.Command {
	return &cobra.Command{Use: "scan PATH...", RunE: func(_ *cobra.Command, args []string) error {
		m.scanned = args
		return nil
	}}
}

type runExit struct{ code int }

func (e runExit) Error() string {
	return "error building image: RUN exited with code 42\ncommand: false"
}
func (e runExit) ExitCode() int { return e.code }

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, engine Engine, migrator Migrator, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	code := Main(args, strings.NewReader("context-tar"), &stdout, &stderr, getenv, engine, migrator)
	return result{code, stdout.String(), stderr.String()}
}

func TestBadInputIsOneLineExitOne(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--no-push", "--insecure-skip-tls-verify"}, "Error: unknown flag: --insecure-skip-tls-verify"},
		{[]string{"--no-push", "--label", "nolabel"}, "Error: labels must be of the form key=value, got nolabel"},
		{[]string{"--no-push", "--registry-client-cert=my.reg=/cert.pem"}, "Error: --registry-client-cert my.reg=/cert.pem: expected format my.reg=/path/to/cert,/path/to/key"},
		{[]string{"--no-push", "--compression=lz4"}, `Error: invalid argument "lz4" for "--compression" flag: must be either "gzip" or "zstd"`},
		{[]string{"--no-push", "--custom-platform=foo/bar/baz/qux"}, `Error: Invalid platform "foo/bar/baz/qux" for --custom-platform`},
		{[]string{}, "Error: you must provide --destination, or use --no-push"},
		{[]string{"--no-push", "--cache"}, "Error: cache flags invalid: if using cache with --no-push, specify cache repo with --cache-repo"},
		{[]string{"--no-push", "--image-name-with-digest-file=/out/names"}, "Error: you must provide --destination if setting ImageNameDigestFile"},
		{[]string{"--no-push", "-v", "chatty"}, `Error: --verbosity="chatty" is not a log level`},
		{[]string{"--no-push", "no-such-command"}, `Error: unexpected argument "no-such-command"`},
	}
	for _, c := range cases {
		engine := &fakeEngine{}
		r := run(t, engine, &fakeMigrator{}, nil, c.args...)
		if r.code != 1 {
			t.Errorf("%q: exit %d, want 1", c.args, r.code)
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		last := lines[len(lines)-1]
		if !strings.HasPrefix(last, c.want) {
			t.Errorf("%q: stderr %q, want a last line starting %q", c.args, r.stderr, c.want)
		}
		if strings.Contains(r.stderr, "goroutine") || strings.Contains(r.stderr, "Usage:") || r.stdout != "" {
			t.Errorf("%q: stack trace or usage dump: stdout %q stderr %q", c.args, r.stdout, r.stderr)
		}
		if len(engine.calls) != 0 {
			t.Errorf("%q: engine called despite the error", c.args)
		}
	}
}

func TestBuildPassesInvocation(t *testing.T) {
	engine := &fakeEngine{}
	r := run(t, engine, &fakeMigrator{}, map[string]string{"TOKEN": "s3cret"}, "", "-d", "reg/a,b", "--build-arg", "TOKEN", "--log-format=text", "")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if engine.inv == nil || engine.inv.Options.Destinations[0] != "reg/a,b" || engine.inv.Options.BuildArgs[0] != "TOKEN=s3cret" {
		t.Fatalf("engine got %+v", engine.inv)
	}
	if engine.stdin != "context-tar" {
		t.Errorf("engine read stdin %q", engine.stdin)
	}
	if strings.Contains(r.stderr, "s3cret") {
		t.Errorf("secret build arg reached the logs: %q", r.stderr)
	}
}

func TestFlagValuesAreNotSubcommands(t *testing.T) {
	for _, name := range []string{"version", "help", "migrate"} {
		engine := &fakeEngine{}
		r := run(t, engine, &fakeMigrator{}, nil, "--no-push", "--target", name)
		if r.code != 0 || engine.inv == nil || engine.inv.Options.Target != name {
			t.Errorf("--target %s: exit %d stdout %q stderr %q", name, r.code, r.stdout, r.stderr)
		}
	}
}

func TestRunExitCodePropagates(t *testing.T) {
	r := run(t, &fakeEngine{buildErr: runExit{42}}, nil, nil, "--no-push")
	if r.code != 42 {
		t.Errorf("exit %d, want 42", r.code)
	}
	if r.stderr != "Error: error building image: RUN exited with code 42 command: false\n" {
		t.Errorf("stderr %q, want the error on one line", r.stderr)
	}
	r = run(t, &fakeEngine{buildErr: errors.New("push failed")}, nil, nil, "--no-push")
	if r.code != 1 || r.stderr != "Error: push failed\n" {
		t.Errorf("plain error: exit %d stderr %q", r.code, r.stderr)
	}
}

func TestNameFilesCheckedAfterContextResolution(t *testing.T) {
	engine := &resolvingEngine{}
	r := run(t, engine, nil, nil, "--no-push", "--context=missing", "--image-name-with-digest-file=f")
	if r.code != 1 || !strings.Contains(r.stderr, "error resolving source context") {
		t.Errorf("want the context error first (Kaniko's order), got exit %d %q", r.code, r.stderr)
	}
	engine = &resolvingEngine{}
	r = run(t, engine, nil, nil, "--no-push", "--image-name-with-digest-file=f")
	if r.code != 1 || !strings.Contains(r.stderr, "ImageNameDigestFile") || strings.Join(engine.calls, ",") != "resolve" {
		t.Errorf("want resolve then the name-file error, got calls %v exit %d %q", engine.calls, r.code, r.stderr)
	}
}

func TestDeprecatedSpellingsWarnAndNoOpsAreExplained(t *testing.T) {
	r := run(t, &fakeEngine{}, nil, nil, "--no-push", "--log-format=text", "--snapshotMode=redo", "--customPlatform=linux/amd64", "--tarPath=/t.tar", "--whitelist-var-run=false", "--use-new-run")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		`level=warning msg="Flag --snapshotMode is deprecated. Use: --snapshot-mode"`,
		`level=warning msg="Flag --customPlatform is deprecated. Use: --custom-platform"`,
		`level=warning msg="Flag --tarPath is deprecated. Use: --tar-path"`,
		`level=warning msg="Flag --whitelist-var-run is deprecated. Use: --ignore-var-run"`,
		`level=info msg="--use-new-run has no effect with kiln`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

func TestLogFormats(t *testing.T) {
	r := run(t, &fakeEngine{}, nil, nil, "--no-push", "--log-format=json", "--snapshotMode=redo")
	if !strings.Contains(r.stderr, `{"level":"warning","msg":"Flag --snapshotMode is deprecated. Use: --snapshot-mode"}`) {
		t.Errorf("json log: %q", r.stderr)
	}
	r = run(t, &fakeEngine{}, nil, nil, "--no-push", "--snapshotMode=redo", "-v", "error")
	if strings.Contains(r.stderr, "deprecated") {
		t.Errorf("warning printed at --verbosity=error: %q", r.stderr)
	}
	r = run(t, &fakeEngine{}, nil, nil, "--no-push", "--snapshotMode=redo")
	if !strings.Contains(r.stderr, "WARN") || !strings.Contains(r.stderr, "\x1b[") {
		t.Errorf("default color log: %q", r.stderr)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-d", "x", "--help"}, {"help"}} {
		r := run(t, &fakeEngine{}, &fakeMigrator{}, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "--destination") || !strings.Contains(r.stdout, "--migration-dry-run") || strings.Contains(r.stdout, "--bucket") {
			t.Errorf("%q: exit %d stdout %q", args, r.code, r.stdout)
		}
	}
	old := version
	version = "v0.1.0"
	defer func() { version = old }()
	r := run(t, &fakeEngine{}, nil, nil, "version")
	if r.code != 0 || r.stdout != "kiln version :  v0.1.0 (Kaniko v1.23.2 command line)\n" {
		t.Errorf("version: exit %d %q", r.code, r.stdout)
	}
}

func TestMigrationDryRun(t *testing.T) {
	engine := &fakeEngine{}
	r := run(t, engine, &fakeMigrator{dryRunCode: 3}, nil, "-d", "reg/img", "--migration-dry-run")
	if r.code != 3 || r.stdout != "dry-run report for reg/img\n" || r.stderr != "" || len(engine.calls) != 0 {
		t.Errorf("dry-run: exit %d stdout %q stderr %q engine %v", r.code, r.stdout, r.stderr, engine.calls)
	}
	r = run(t, engine, &fakeMigrator{}, map[string]string{"KILN_MIGRATION_DRY_RUN": "true"}, "-d", "reg/img")
	if r.code != 0 || !strings.Contains(r.stdout, "dry-run report") || len(engine.calls) != 0 {
		t.Errorf("dry-run from env: exit %d stdout %q engine %v", r.code, r.stdout, engine.calls)
	}
	// Parse errors stay usage errors, even in a dry run.
	r = run(t, engine, &fakeMigrator{}, nil, "--migration-dry-run", "--nope")
	if r.code != 1 || !strings.Contains(r.stderr, "unknown flag: --nope") {
		t.Errorf("dry-run parse error: exit %d stderr %q", r.code, r.stderr)
	}
}

func TestMigrateScanRoutes(t *testing.T) {
	m := &fakeMigrator{}
	r := run(t, &fakeEngine{}, m, nil, "migrate", "scan", ".gitlab-ci.yml", "k8s/")
	if r.code != 0 || strings.Join(m.scanned, " ") != ".gitlab-ci.yml k8s/" {
		t.Errorf("migrate scan: exit %d scanned %v stderr %q", r.code, m.scanned, r.stderr)
	}
}

func TestForkLogin(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"DOCKER_CONFIG": dir}
	var stdout, stderr bytes.Buffer
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	code := Main([]string{"login", "registry.example.com:5000", "-u", "ci", "--password-stdin"}, strings.NewReader("pa55word\n"), &stdout, &stderr, getenv, &fakeEngine{}, nil)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	// docker's config stores user:password base64-encoded in auth.
	if want := base64.StdEncoding.EncodeToString([]byte("ci:pa55word")); !strings.Contains(string(data), `"registry.example.com:5000"`) || !strings.Contains(string(data), want) {
		t.Errorf("config.json lacks the credential:\n%s", data)
	}
	if strings.Contains(stdout.String()+stderr.String(), "pa55word") {
		t.Error("login printed the password")
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"login", "r.example.com", "-u", "ci"}, "give the password with --password-stdin"},
		{[]string{"login", "r.example.com", "-p", "x"}, "--username is required"},
		{[]string{"push", "image.tar", "-d", "r.example.com/app"}, "executor push is not supported by kiln"},
	} {
		res := run(t, &fakeEngine{}, nil, env, tc.args...)
		if res.code != 1 || !strings.Contains(res.stderr, tc.want) || strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 {
			t.Errorf("%q: exit %d, stderr %q, want one line with %q", tc.args, res.code, res.stderr, tc.want)
		}
	}
}

// signalledEngine blocks until the build's context ends, after sending the
// executor sig, as a CI job's deadline does mid-build.
type signalledEngine struct{ sig syscall.Signal }

func (e signalledEngine) Build(ctx context.Context, _ *flagmap.Invocation) error {
	syscall.Kill(os.Getpid(), e.sig)
	<-ctx.Done()
	return fmt.Errorf("error building image: %w", ctx.Err())
}

// TestSignalStopsTheBuildWithKanikosExitCode: SIGTERM or SIGINT mid-build
// ends it with one line naming the signal and the exit code Kaniko's death
// by that signal shows (128+signal).
func TestSignalStopsTheBuildWithKanikosExitCode(t *testing.T) {
	for sig, code := range map[syscall.Signal]int{syscall.SIGTERM: 143, syscall.SIGINT: 130} {
		r := run(t, signalledEngine{sig}, &fakeMigrator{}, nil, "--context", t.TempDir(), "--no-push")
		want := "Error: the build was stopped by " + unix.SignalName(sig) + " before it finished: error building image: context canceled\n"
		if r.code != code || r.stderr != want {
			t.Errorf("%v: exit %d, stderr %q; want %d, %q", sig, r.code, r.stderr, code, want)
		}
	}
}
