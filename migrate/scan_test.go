package migrate

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func scanFixtures(t *testing.T) *ScanResult {
	t.Helper()
	res, err := (&Migrator{}).Scan([]string{"testdata"})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func findInvocation(t *testing.T, res *ScanResult, job, container string) Report {
	t.Helper()
	for _, r := range res.Invocations {
		if r.Source.Job == job && r.Source.Container == container {
			return r
		}
	}
	t.Fatalf("no invocation for %s/%s", job, container)
	return Report{}
}

func hasFlag(r Report, spelling, value string) bool {
	for _, f := range r.Flags {
		if f.Flag == spelling {
			for _, v := range f.Values {
				if v == value {
					return true
				}
			}
		}
	}
	return false
}

func hasChange(r Report, setting string) bool {
	for _, c := range r.Changes {
		if c.Setting == setting {
			return true
		}
	}
	return false
}

func TestScanFindsEveryInvocation(t *testing.T) {
	res := scanFixtures(t)
	var got []string
	for _, r := range res.Invocations {
		got = append(got, r.Source.Kind+" "+r.Source.Job+"/"+r.Source.Container)
	}
	want := []string{
		"gitlab-ci build-image/", "gitlab-ci kaniko-build/", "gitlab-ci release/", "gitlab-ci build/",
		"kubernetes Job/image-build/kaniko", "kubernetes CronJob/nightly-base/builder",
		"kubernetes Job/fork-build/build", "kubernetes Job/kimia-build/kimia",
		"kubernetes Pod/kaniko-*/kaniko",
		"tekton Task/build-with-kaniko/build-and-push",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("found:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.Summary.Files != 6 || res.Summary.Invocations != len(want) {
		t.Errorf("summary %+v", res.Summary)
	}
}

func TestScanGitLab(t *testing.T) {
	res := scanFixtures(t)

	tmpl := findInvocation(t, res, "kaniko-build", "")
	if tmpl.Source.Image != "gcr.io/kaniko-project/executor:debug" {
		t.Errorf("template image %q", tmpl.Source.Image)
	}
	// KANIKO_ARGS from the pipeline variables is word-split into flags.
	for _, want := range [][2]string{{"--context", "$CI_PROJECT_DIR"}, {"--cache", "true"}, {"--cache-repo", "$CI_REGISTRY_IMAGE/cache"}, {"--snapshotMode", "redo"}} {
		if !hasFlag(tmpl, want[0], want[1]) {
			t.Errorf("template job lacks %s=%s: %+v", want[0], want[1], tmpl.Flags)
		}
	}
	if !hasChange(tmpl, "image") || !hasChange(tmpl, "GitLab Runner (config.toml)") || tmpl.Verdict != VerdictNeedsChanges {
		t.Errorf("template job changes/verdict: %+v %s", tmpl.Changes, tmpl.Verdict)
	}

	build := findInvocation(t, res, "build-image", "")
	if !hasFlag(build, "--dockerfile", "${CI_PROJECT_DIR}/docker/Dockerfile") || !hasFlag(build, "--build-arg", "HTTP_PROXY=***") || !hasFlag(build, "--skip-unused-stages", "true") {
		t.Errorf("build-image flags: %+v", build.Flags)
	}

	release := findInvocation(t, res, "release", "")
	if !hasFlag(release, "--destination", "$CI_REGISTRY_IMAGE:$CI_COMMIT_TAG") || !hasFlag(release, "--destination", "$CI_REGISTRY_IMAGE:latest") {
		t.Errorf("release destinations: %+v", release.Flags)
	}
	// EXTRA_FLAGS comes from the extended hidden job.
	if !hasFlag(release, "--use-new-run", "true") || !hasFlag(release, "--single-snapshot", "true") {
		t.Errorf("release lacks the extended job's flags: %+v", release.Flags)
	}
}

func TestScanKubernetes(t *testing.T) {
	res := scanFixtures(t)
	job := findInvocation(t, res, "Job/image-build", "kaniko")
	for _, setting := range []string{"securityContext.runAsUser", "securityContext.seccompProfile", "securityContext.appArmorProfile", "securityContext.allowPrivilegeEscalation", "securityContext.capabilities"} {
		if !hasChange(job, setting) {
			t.Errorf("Job lacks change %s: %+v", setting, job.Changes)
		}
	}
	if !hasFlag(job, "--ignore-path", "/product_uuid") {
		t.Errorf("Job flags: %+v", job.Flags)
	}

	cron := findInvocation(t, res, "CronJob/nightly-base", "builder")
	for _, setting := range []string{"securityContext.runAsUser", "securityContext.seccompProfile", "securityContext.appArmorProfile"} {
		if hasChange(cron, setting) {
			t.Errorf("CronJob already sets %s, yet a change is reported: %+v", setting, cron.Changes)
		}
	}
	// git:// contexts are fetched by kiln; scan does not clone, so it must not flag one.
	if strings.Contains(noteText(cron), "not yet supported") {
		t.Errorf("CronJob git context flagged as unsupported: %+v", cron.Notes)
	}

	skaffold := findInvocation(t, res, "Pod/kaniko-*", "kaniko")
	if !hasFlag(skaffold, "--tarPath", "/workspace/frontend.tar") || !hasFlag(skaffold, "--build-arg", "NPM_TOKEN") {
		t.Errorf("Skaffold pod flags: %+v", skaffold.Flags)
	}
	for _, f := range skaffold.Flags {
		if f.Flag == "--tarPath" && f.ReplacedBy != "--tar-path" {
			t.Errorf("--tarPath not marked deprecated: %+v", f)
		}
	}
}

func noteText(r Report) string {
	var b strings.Builder
	for _, n := range r.Notes {
		b.WriteString(n.Message + "\n")
	}
	return b.String()
}

func TestScanTekton(t *testing.T) {
	res := scanFixtures(t)
	task := findInvocation(t, res, "Task/build-with-kaniko", "build-and-push")
	if task.Source.Image != "gcr.io/kaniko-project/executor:v1.5.1" {
		t.Errorf("image from the BUILDER_IMAGE default: %q", task.Source.Image)
	}
	if task.Error != "" {
		t.Fatalf("Tekton task reported invalid: %s", task.Error)
	}
	if !hasFlag(task, "--destination", "$(params.IMAGE)") || !hasFlag(task, "--context", "$(workspaces.source.path)/$(params.CONTEXT)") {
		t.Errorf("substitutions not kept verbatim: %+v", task.Flags)
	}
	if !strings.Contains(noteText(task), "$(params.EXTRA_ARGS[*]) expands at run time") {
		t.Errorf("EXTRA_ARGS note missing: %+v", task.Notes)
	}
	if !hasChange(task, "securityContext.runAsUser") {
		t.Errorf("runAsUser: 0 not flagged: %+v", task.Changes)
	}
}

func TestScanCommand(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		cmd := (&Migrator{}).ScanCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"--format", format, "--kiln-image", "kiln:test", "testdata"})
		err := cmd.Execute()
		var exit interface{ ExitCode() int }
		if !errors.As(err, &exit) || exit.ExitCode() != 3 {
			t.Fatalf("%s: error %v, want exit code 3", format, err)
		}
		if format == "text" {
			assertLines(t, out.String(),
				"testdata/gitlab/.gitlab-ci.yml: gitlab-ci kaniko-build (image gcr.io/kaniko-project/executor:debug)",
				"image: gcr.io/kaniko-project/executor:debug → kiln:test",
				"securityContext.seccompProfile: unset (RuntimeDefault) → {type: Unconfined}",
				"10 Kaniko invocations in 6 files",
			)
			continue
		}
		var res ScanResult
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("json: %v", err)
		}
		if res.Summary.Invocations != 10 || res.Invocations[0].Changes[0].Required != "kiln:test" {
			t.Errorf("json summary %+v, first changes %+v", res.Summary, res.Invocations[0].Changes)
		}
	}
	cmd := (&Migrator{}).ScanCommand()
	cmd.SetArgs([]string{"does-not-exist"})
	var exit interface{ ExitCode() int }
	if err := cmd.Execute(); !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("missing path: %v", err)
	}
}

// Jobs and CI files on the fork's or Kimia's images are found, their flags
// mapped, and Kimia's command replaced.
func TestScanForkAndKimia(t *testing.T) {
	res := scanFixtures(t)
	fork := findInvocation(t, res, "Job/fork-build", "build")
	if !hasChange(fork, "image") || !hasFlag(fork, "--secret", "id=npmrc,src=/run/secrets/npmrc") || !hasFlag(fork, "env FF_KANIKO_COPY_AS_ROOT", "1") || !hasFlag(fork, "--pre-cleanup", "true") {
		t.Errorf("fork Job: changes %+v flags %+v", fork.Changes, fork.Flags)
	}
	kimia := findInvocation(t, res, "Job/kimia-build", "kimia")
	if !hasChange(kimia, "image") || !hasChange(kimia, "command") {
		t.Errorf("Kimia Job changes: %+v", kimia.Changes)
	}
	if !hasFlag(kimia, "--git-revision", "9f2c1e7") || !hasFlag(kimia, "--timestamp", "1700000000") || kimia.Context == nil || kimia.Context.Value != "git://git.example.com/team/app.git#9f2c1e7" {
		t.Errorf("Kimia Job flags %+v context %+v", kimia.Flags, kimia.Context)
	}
	ci := findInvocation(t, res, "build", "")
	if ci.Source.Image != "ghcr.io/rapidfort/kimia:1.0.25" || !hasFlag(ci, "--export-cache", "type=registry,ref=$CI_REGISTRY_IMAGE:cache,mode=max") || !hasChange(ci, "command") {
		t.Errorf("Kimia CI job: %+v %+v", ci.Source, ci.Flags)
	}
}
