package flagmap

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func parseWith(t *testing.T, env map[string]string, args ...string) *Invocation {
	t.Helper()
	inv, err := Parse(args, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return inv
}

func TestForkSpellings(t *testing.T) {
	inv := parseWith(t, map[string]string{"KANIKO_PRE_CLEANUP": "true", "KANIKO_CLEANUP": "maybe", "FF_KANIKO_COPY_AS_ROOT": "1"},
		"--secret", "id=tok,src=/run/tok", "--secret=id=npm,env=NPM_TOKEN", "--annotation", "org.opencontainers.image.source=https://example.com/app",
		"--preserve-context", "--materialize", "--image-format=docker", "--dryrun", "--no-push")
	o := inv.Options
	if !reflect.DeepEqual(o.Secrets, []string{"id=tok,src=/run/tok", "id=npm,env=NPM_TOKEN"}) {
		t.Errorf("secrets %q", o.Secrets)
	}
	if o.Annotations["org.opencontainers.image.source"] != "https://example.com/app" || !o.PreserveContext || !o.Materialize || o.ImageFormat != "docker" {
		t.Errorf("fork options %+v", o)
	}
	if !o.Dryrun || !o.MigrationDryRun {
		t.Error("--dryrun does not run the migration dry-run")
	}
	if !o.PreCleanup || o.Cleanup {
		t.Errorf("KANIKO_PRE_CLEANUP=true gave %v, KANIKO_CLEANUP=maybe gave %v (want true, false)", o.PreCleanup, o.Cleanup)
	}
	var sawFF bool
	for _, g := range inv.Given {
		if g.Spelling == "env FF_KANIKO_COPY_AS_ROOT" && g.Flag.Target().Disposition == NoOp {
			sawFF = true
		}
	}
	if !sawFF {
		t.Errorf("FF_KANIKO_COPY_AS_ROOT not recorded: %+v", inv.Given)
	}
	if !strings.Contains(strings.Join(inv.Warnings, "\n"), `KANIKO_CLEANUP="maybe"`) {
		t.Errorf("no warning for KANIKO_CLEANUP=maybe: %q", inv.Warnings)
	}
	notices := strings.Join(inv.Notices(), "\n")
	for _, want := range []string{"env FF_KANIKO_COPY_AS_ROOT has no effect", "--preserve-context has no effect", "--materialize has no effect"} {
		if !strings.Contains(notices, want) {
			t.Errorf("notices lack %q:\n%s", want, notices)
		}
	}

	// The flag wins over the fork's variable.
	inv = parseWith(t, map[string]string{"KANIKO_PRESERVE_CONTEXT": "true"}, "--preserve-context=false", "--no-push")
	if inv.Options.PreserveContext {
		t.Error("KANIKO_PRESERVE_CONTEXT overrode --preserve-context=false")
	}
}

func TestKimiaSpellings(t *testing.T) {
	inv := parseWith(t, map[string]string{"SOURCE_DATE_EPOCH": "5"},
		"-c", "git://git.example.com/team/app.git", "--git-branch", "release", "--git-revision", "0123abcd",
		"--git-token-user", "ci", "--timestamp", "1700000000", "-t", "build", "--attestation", "--no-push",
		"--import-cache", "type=registry,ref=registry.example.com/app:cache", "--export-cache", "registry.example.com/app:cache",
		"--buildkit-opt", "build-arg:TOKEN=hunter2", "--storage-driver", "vfs")
	o := inv.Options
	if o.Context != "git://git.example.com/team/app.git#0123abcd" || o.Git.Branch != "release" || o.Env.GitUsername != "ci" {
		t.Errorf("git: context %q branch %q user %q", o.Context, o.Git.Branch, o.Env.GitUsername)
	}
	if o.SourceDateEpoch == nil || *o.SourceDateEpoch != 1700000000 || !o.Reproducible {
		t.Errorf("--timestamp beats SOURCE_DATE_EPOCH and implies --reproducible: %v %v", o.SourceDateEpoch, o.Reproducible)
	}
	if o.Target != "build" || o.Attestation != "min" {
		t.Errorf("-t %q, bare --attestation %q", o.Target, o.Attestation)
	}
	for _, g := range inv.Given {
		if g.Spelling == "--buildkit-opt" && g.Redacted()[0] != "build-arg:TOKEN=***" {
			t.Errorf("--buildkit-opt value shown as %q", g.Redacted())
		}
	}
	spec, err := ParseCacheSpec("--export-cache", o.ExportCache[0])
	if err != nil || spec.Type != "registry" || spec.Attrs["ref"] != "registry.example.com/app:cache" {
		t.Errorf("bare cache ref: %+v %v", spec, err)
	}
	if req, err := Attestations(&o); err != nil || req.Provenance != "min" || req.SBOM {
		t.Errorf("bare --attestation: %+v %v", req, err)
	}
	for _, tc := range []struct {
		args []string
		want AttestRequest
	}{
		{[]string{"--attestation=max"}, AttestRequest{SBOM: true, Provenance: "max"}},
		{[]string{"--attestation=off"}, AttestRequest{}},
		{[]string{"--attestation=max", "--attest", "type=sbom"}, AttestRequest{SBOM: true}},
		{[]string{"--attest", "type=provenance,mode=max", "--attest=type=sbom"}, AttestRequest{SBOM: true, Provenance: "max"}},
		{[]string{"--attest", "type=provenance"}, AttestRequest{Provenance: "min"}},
	} {
		o := parseWith(t, nil, append(tc.args, "--no-push")...).Options
		if got, err := Attestations(&o); err != nil || got != tc.want {
			t.Errorf("%q: %+v %v, want %+v", tc.args, got, err, tc.want)
		}
	}
}

func TestOtherCommandLineErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--timestamp", "yesterday"}, `--timestamp="yesterday" is not a Unix time`},
		{[]string{"--image-format", "oci"}, "--image-format=oci is not supported"},
		{[]string{"--image-format", "v2"}, `invalid argument "v2" for "--image-format"`},
		{[]string{"--secret", "src=/run/tok"}, "--secret src=/run/tok: no id"},
		{[]string{"--secret", "id=a,src=f,env=V"}, "either src or env"},
		{[]string{"--secret", "id=a,kind=env"}, `unknown key "kind"`},
		{[]string{"--secret", "id=a", "--secret", "id=a,env=B"}, `id "a" is given twice`},
		{[]string{"--import-cache", "ref=x"}, "--import-cache ref=x: no type"},
		{[]string{"--buildkit-opt", "no-cache"}, "--buildkit-opt no-cache: write key=value"},
		{[]string{"-c", "git://h/r.git#main#abc", "--git-revision", "def"}, "already names a commit"},
		{[]string{"--attest", "type=vuln"}, "--attest type=vuln: write type=sbom or type=provenance"},
		{[]string{"--attest", "type=sbom,generator=img"}, `unknown key "generator"`},
		{[]string{"--attestation=all"}, `invalid argument "all" for "--attestation"`},
	} {
		inv, err := Parse(append(tc.args, "--no-push"), nil)
		if err == nil {
			err = inv.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %v, want one line with %q", tc.args, err, tc.want)
		}
	}
}

func TestSecretSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tok")
	if err := os.WriteFile(file, []byte("file-value"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"NPM_TOKEN": "env-value", "plain": "by-id"}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	secrets, err := ParseSecrets([]string{"id=tok,src=" + file, "id=npm,env=NPM_TOKEN", "id=plain", "id=viaenv,type=env,src=NPM_TOKEN", "id=" + file}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	values, err := ReadSecrets(secrets, getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"tok": "file-value", "npm": "env-value", "plain": "by-id", "viaenv": "env-value", file: "file-value"}
	for id, v := range want {
		if string(values[id]) != v {
			t.Errorf("secret %s = %q, want %q", id, values[id], v)
		}
	}
	for _, tc := range []struct{ spec, want string }{
		{"id=gone,env=UNSET_VAR", "the variable UNSET_VAR is not set"},
		{"id=missing,src=" + filepath.Join(dir, "nope"), "cannot read " + filepath.Join(dir, "nope")},
	} {
		s, err := ParseSecrets([]string{tc.spec}, getenv)
		if err == nil {
			_, err = ReadSecrets(s, getenv)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.spec, err, tc.want)
		}
	}
}

func TestGitTokenFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := Options{GitTokenFile: file}
	if err := ReadGitTokenFile(&o); err != nil || o.Env.GitToken != "s3cret" {
		t.Errorf("token %q, %v", o.Env.GitToken, err)
	}
	o = Options{GitTokenFile: file + ".missing"}
	if err := ReadGitTokenFile(&o); err == nil || !strings.Contains(err.Error(), "--git-token-file") {
		t.Errorf("missing token file: %v", err)
	}
}
