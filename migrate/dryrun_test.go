package migrate

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kilnbuild/kiln/flagmap"
)

const appDockerfile = `FROM golang:1.23 AS build
RUN go build -o /out/app .
FROM build AS test
RUN go test ./...
FROM debian:bookworm-slim
COPY --from=build /out/app /app
`

// readyProbe is an environment that passes every check: root with full
// capabilities, as on a privileged runner.
func readyProbe(t *testing.T) Probe {
	p := fakeRoot(t, map[string]string{"proc/self/status": strings.Replace(healthyStatus, "CapEff:\t0000000000000000", "CapEff:\t000001ffffffffff", 1)})
	root := 0
	p.Euid = &root
	return p
}

type dryRunCase struct {
	args []string
	env  map[string]string
}

func (c dryRunCase) run(t *testing.T, m *Migrator, format string) (string, int) {
	t.Helper()
	args := append([]string{}, c.args...)
	if format != "" {
		args = append(args, "--migration-report="+format)
	}
	inv, err := flagmap.Parse(args, func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
	if err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	var out bytes.Buffer
	code := m.DryRun(context.Background(), inv, &out)
	return out.String(), code
}

func decodeReport(t *testing.T, out string) Report {
	t.Helper()
	var r Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	if r.SchemaVersion != SchemaVersion {
		t.Fatalf("schemaVersion %d", r.SchemaVersion)
	}
	return r
}

func flagByName(t *testing.T, r Report, spelling string) FlagReport {
	t.Helper()
	for _, f := range r.Flags {
		if f.Flag == spelling {
			return f
		}
	}
	t.Fatalf("flag %s missing from %+v", spelling, r.Flags)
	return FlagReport{}
}

func assertLines(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("report lacks %q:\n%s", w, out)
		}
	}
}

// projectDir makes a checkout with the Dockerfile and a docker config.
func projectDir(t *testing.T) (project, dockerConfig string) {
	project = t.TempDir()
	if err := os.WriteFile(filepath.Join(project, "Dockerfile"), []byte(appDockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	dockerConfig = filepath.Join(t.TempDir(), ".docker")
	if err := os.MkdirAll(dockerConfig, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := `{"auths":{"registry.gitlab.example.com":{"auth":"Z2l0bGFiLWNpLXRva2VuOnNlY3JldC10b2tlbg=="}}}`
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return project, dockerConfig
}

func TestDryRunGitLabTemplate(t *testing.T) {
	project, dockerConfig := projectDir(t)
	// The template's call with its variables expanded, KANIKO_ARGS empty.
	c := dryRunCase{
		args: []string{"--context", project, "--dockerfile", project + "/Dockerfile", "--destination", "registry.gitlab.example.com/group/app:latest"},
		env:  map[string]string{"DOCKER_CONFIG": dockerConfig},
	}
	m := &Migrator{Probe: readyProbe(t)}

	text, code := c.run(t, m, "")
	if code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, text)
	}
	assertLines(t, text,
		"--context="+project+"  →  native",
		"--destination=registry.gitlab.example.com/group/app:latest  →  native",
		"Dockerfile: "+project+"/Dockerfile (3 stages; base images: golang:1.23, debian:bookworm-slim)",
		`[ok] registry.gitlab.example.com (push): auths entry "registry.gitlab.example.com" in `+dockerConfig+"/config.json",
		"stages built (as Kaniko builds them): 0 (build), 1 (test), 2",
		"[ok] identity: running as root",
		"Result: kiln would run this invocation as is (exit 0)",
	)
	if strings.Contains(text, "c2VjcmV0") || strings.Contains(text, "secret-token") {
		t.Errorf("report leaks the credential:\n%s", text)
	}

	out, code := c.run(t, m, "json")
	r := decodeReport(t, out)
	if code != 0 || r.Verdict != VerdictReady || r.ExitCode != 0 {
		t.Fatalf("exit %d verdict %s:\n%s", code, r.Verdict, out)
	}
	if f := flagByName(t, r, "--dockerfile"); f.Disposition != "native" || f.Values[0] != project+"/Dockerfile" {
		t.Errorf("--dockerfile: %+v", f)
	}
	if r.Context == nil || r.Context.Dir != project || r.Dockerfile == nil || !slices.Equal(r.Dockerfile.BuiltStages, []string{"0 (build)", "1 (test)", "2"}) {
		t.Errorf("context/dockerfile: %+v %+v", r.Context, r.Dockerfile)
	}
	if len(r.Credentials) != 1 || !r.Credentials[0].Found || r.Credentials[0].For != "push" {
		t.Errorf("credentials: %+v", r.Credentials)
	}
}

func TestDryRunTektonTask(t *testing.T) {
	workspace, dockerConfig := projectDir(t)
	t.Chdir(workspace) // the task's workingDir is the source workspace
	results := t.TempDir()
	c := dryRunCase{
		// EXTRA_ARGS first, then the task's own args.
		args: []string{"--cache=true", "--cache-ttl=24h", "--skip-unused-stages",
			"--dockerfile=./Dockerfile", "--context=" + workspace + "/./",
			"--destination=registry.example.com/team/app:1.0", "--digest-file=" + results + "/IMAGE_DIGEST"},
		env: map[string]string{"DOCKER_CONFIG": dockerConfig},
	}
	m := &Migrator{Probe: readyProbe(t)}
	text, code := c.run(t, m, "text")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, text)
	}
	assertLines(t, text,
		"--digest-file="+results+"/IMAGE_DIGEST  →  emulated",
		"--cache-ttl=24h  →  emulated",
		"[missing] registry.example.com (push): no credentials for registry.example.com",
		"[missing] registry.example.com (cache)",
		"Result: kiln would run this invocation as is (exit 0)",
	)
	// Kaniko's --skip-unused-stages drops the test stage: the target uses
	// only build.
	assertLines(t, text, "stages built (as Kaniko builds them): 0 (build), 2")
	out, _ := c.run(t, m, "json")
	r := decodeReport(t, out)
	if r.Dockerfile == nil || r.Dockerfile.Path != workspace+"/Dockerfile" {
		t.Errorf("Dockerfile resolved against the working directory: %+v", r.Dockerfile)
	}
	if f := flagByName(t, r, "--skip-unused-stages"); f.Disposition != "native" {
		t.Errorf("--skip-unused-stages: %+v", f)
	}
}

func TestDryRunSkaffoldArgs(t *testing.T) {
	buildContext, dockerConfig := projectDir(t)
	tarDir := t.TempDir()
	c := dryRunCase{
		args: []string{"--destination", "registry.gitlab.example.com/group/app:v1", "--dockerfile", "Dockerfile",
			"--context", "dir://" + buildContext, "--build-arg", "GO_VERSION=1.23", "--build-arg", "NPM_TOKEN",
			"--cache", "--cache-repo", "registry.gitlab.example.com/group/cache", "--target", "build",
			"--snapshot-mode", "redo", "--tarPath", tarDir + "/image.tar", "--whitelist-var-run", "--verbosity", "debug"},
		env: map[string]string{"DOCKER_CONFIG": dockerConfig, "NPM_TOKEN": "npm-secret-value", "UPSTREAM_CLIENT_TYPE": "UpstreamClient(skaffold-2.13.0)"},
	}
	m := &Migrator{Probe: readyProbe(t)}
	text, code := c.run(t, m, "")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, text)
	}
	assertLines(t, text,
		"--tarPath="+tarDir+"/image.tar  →  emulated",
		"(deprecated spelling of --tar-path)",
		"--whitelist-var-run=true  →  emulated",
		"--snapshot-mode=redo  →  accepted-no-op",
		"--build-arg=GO_VERSION=*** --build-arg=NPM_TOKEN  →  native",
		"Context: --context dir://"+buildContext+" → "+buildContext,
	)
	if strings.Contains(text, "npm-secret-value") {
		t.Fatalf("secret build arg leaked:\n%s", text)
	}
	out, _ := c.run(t, m, "json")
	r := decodeReport(t, out)
	if f := flagByName(t, r, "--tarPath"); f.ReplacedBy != "--tar-path" || f.Disposition != "emulated" {
		t.Errorf("--tarPath: %+v", f)
	}
	if f := flagByName(t, r, "--snapshot-mode"); f.Reason == "" {
		t.Errorf("no-op flag without a reason: %+v", f)
	}
	if r.Dockerfile == nil || r.Dockerfile.Target != "build" || !slices.Equal(r.Dockerfile.BuiltStages, []string{"0 (build)"}) {
		t.Errorf("target build: %+v", r.Dockerfile)
	}
	if strings.Contains(out, "npm-secret-value") {
		t.Fatal("secret build arg leaked into JSON")
	}
}

func TestDryRunExitCodes(t *testing.T) {
	project, dockerConfig := projectDir(t)
	env := map[string]string{"DOCKER_CONFIG": dockerConfig}
	for _, tc := range []struct {
		name  string
		args  []string
		probe func(*Probe)
		code  int
		want  string
	}{
		{"no destination", []string{"--context", project}, nil, 1, "you must provide --destination, or use --no-push"},
		{"missing context", []string{"--context", project + "/nope", "--no-push"}, nil, 1, "does not exist"},
		{"missing Dockerfile", []string{"--context", project, "--dockerfile", "nope.Dockerfile", "--no-push"}, nil, 1, "please provide a valid path to a Dockerfile"},
		{"bad destination", []string{"--context", project, "--destination", "UPPER/Case:tag"}, nil, 1, "not an image reference"},
		{"unreachable git context", []string{"--context", "git://127.0.0.1:1/group/app.git", "--no-push"}, nil, 3, "git clone failed"},
		{"unknown target", []string{"--context", project, "--no-push", "--target", "release"}, nil, 3, "--target release"},
		{"seccomp blocks rootless", []string{"--context", project, "--no-push"}, func(p *Probe) {
			uid := 1000
			p.Euid = &uid
			p.TryUserNamespace = func() error { return os.ErrPermission }
		}, 3, "fix: securityContext: {seccompProfile: {type: Unconfined}}"},
		{"remote BuildKit skips the preflight", []string{"--context", project, "--no-push", "--buildkit-host", "tcp://buildkitd:1234"}, func(p *Probe) {
			p.TryUserNamespace = func() error { return os.ErrPermission }
		}, 0, "starts no daemon here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := readyProbe(t)
			if tc.probe != nil {
				tc.probe(&p)
			}
			text, code := dryRunCase{args: tc.args, env: env}.run(t, &Migrator{Probe: p}, "")
			if code != tc.code || !strings.Contains(text, tc.want) {
				t.Errorf("exit %d (want %d), report lacks %q?\n%s", code, tc.code, tc.want, text)
			}
		})
	}
}
