package migrate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A Job of the maintained Kaniko fork: a secret from a file and one from a
// variable, an annotation, its cleanup variables and a feature flag.
func TestDryRunKanikoForkInvocation(t *testing.T) {
	project, dockerConfig := projectDir(t)
	tokenFile := filepath.Join(t.TempDir(), "npmrc")
	if err := os.WriteFile(tokenFile, []byte("//registry.npmjs.org/:_authToken=npm-file-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := dryRunCase{
		args: []string{"--context=dir://" + project, "--destination=registry.gitlab.example.com/group/app:1.0",
			"--secret", "id=npmrc,src=" + tokenFile, "--secret", "id=token,env=DEPLOY_TOKEN",
			"--annotation=org.opencontainers.image.source=https://git.example.com/group/app",
			"--preserve-context", "--image-format=docker"},
		env: map[string]string{"DOCKER_CONFIG": dockerConfig, "DEPLOY_TOKEN": "env-secret-value",
			"KANIKO_PRE_CLEANUP": "true", "FF_KANIKO_RUN_MOUNT_BIND": "1"},
	}
	m := &Migrator{Probe: readyProbe(t)}
	text, code := c.run(t, m, "")
	if code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, text)
	}
	assertLines(t, text,
		"--secret=id=npmrc,src="+tokenFile+" --secret=id=token,env=DEPLOY_TOKEN  →  native: session secrets provider",
		"--annotation=org.opencontainers.image.source=https://git.example.com/group/app  →  emulated: kiln writes the annotations into the manifest",
		"--preserve-context=true  →  accepted-no-op: BuildKit reads the context through its session",
		"--image-format=docker  →  native",
		"env KANIKO_PRE_CLEANUP=true  →  accepted-no-op",
		"env FF_KANIKO_RUN_MOUNT_BIND=1  →  accepted-no-op: kiln uses BuildKit's Dockerfile frontend",
		"secret npmrc comes from the file "+tokenFile+" and is readable",
		"secret token comes from the variable DEPLOY_TOKEN and is readable",
		"Result: kiln would run this invocation as is (exit 0)",
	)
	out, _ := c.run(t, m, "json")
	r := decodeReport(t, out)
	if f := flagByName(t, r, "env FF_KANIKO_RUN_MOUNT_BIND"); f.Disposition != "accepted-no-op" || f.Reason == "" {
		t.Errorf("feature flag: %+v", f)
	}
	if f := flagByName(t, r, "--secret"); f.Disposition != "native" || len(f.Values) != 2 {
		t.Errorf("--secret: %+v", f)
	}
	for _, leak := range []string{"env-secret-value", "npm-file-secret"} {
		if strings.Contains(text+out, leak) {
			t.Errorf("report shows the secret value %q", leak)
		}
	}

	// A secret whose source is missing is found before the build.
	c.env["DEPLOY_TOKEN"] = ""
	delete(c.env, "DEPLOY_TOKEN")
	text, code = c.run(t, m, "")
	if code != 3 || !strings.Contains(text, "error: secrets: --secret id=token: the variable DEPLOY_TOKEN is not set") {
		t.Errorf("missing secret variable: exit %d\n%s", code, text)
	}
}

// A Kimia invocation: its git, timestamp, cache and attestation spellings.
func TestDryRunKimiaInvocation(t *testing.T) {
	project, dockerConfig := projectDir(t)
	c := dryRunCase{
		args: []string{"-c", project, "-f", "Dockerfile", "-d", "registry.example.com/team/app:2.0", "-t", "build",
			"--timestamp=1700000000", "--export-cache", "type=registry,ref=registry.example.com/team/app:buildcache,mode=max",
			"--import-cache", "type=registry,ref=registry.example.com/team/app:buildcache", "--storage-driver=overlay",
			"--buildkit-opt", "build-arg:NPM_TOKEN=opt-secret-value", "--attestation=max", "--sign", "--cosign-key=/etc/cosign/cosign.key"},
		env: map[string]string{"DOCKER_CONFIG": dockerConfig},
	}
	m := &Migrator{Probe: readyProbe(t)}
	text, code := c.run(t, m, "")
	// The cosign key is missing here.
	if code != 3 {
		t.Fatalf("exit %d, want 3:\n%s", code, text)
	}
	assertLines(t, text,
		"--target=build  →  native: frontend option `target`",
		"--timestamp=1700000000  →  emulated: build-arg SOURCE_DATE_EPOCH",
		"--export-cache=type=registry,ref=registry.example.com/team/app:buildcache,mode=max  →  native: cache export entry",
		"--import-cache=type=registry,ref=registry.example.com/team/app:buildcache  →  native: cache import entry",
		"--storage-driver=overlay  →  accepted-no-op: kiln starts its own buildkitd",
		"--buildkit-opt=build-arg:NPM_TOKEN=***  →  native",
		"--attestation=max  →  emulated: provenance is BuildKit's",
		"--sign=true  →  emulated: kiln signs each destination's pushed digest with cosign's library",
		"error: signing: --cosign-key /etc/cosign/cosign.key: cannot read it",
		"stages built (as Kaniko builds them): 0 (build)",
		"Result: needs changes before kiln can run it (exit 3)",
	)
	out, _ := c.run(t, m, "json")
	r := decodeReport(t, out)
	if r.Verdict != VerdictNeedsChanges {
		t.Errorf("verdict %s", r.Verdict)
	}
	if f := flagByName(t, r, "--cosign-key"); f.Disposition != "emulated" || f.BuildKit == "" {
		t.Errorf("--cosign-key: %+v", f)
	}
	if f := flagByName(t, r, "--timestamp"); f.Disposition != "emulated" || f.Values[0] != "1700000000" {
		t.Errorf("--timestamp: %+v", f)
	}
	if strings.Contains(text+out, "opt-secret-value") {
		t.Error("report shows a --buildkit-opt build-arg value")
	}
}
