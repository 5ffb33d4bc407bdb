package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/flagmap"
)

// Migrator implements the executor's migration commands: the dry-run and
// `executor migrate scan`.
type Migrator struct {
	// Probe checks the environment for the dry-run; its zero value probes
	// this machine (with the invocation's kaniko dir as state dir).
	Probe Probe
	// KilnImage is what scan suggests instead of a Kaniko image; "" gives a
	// generic instruction.
	KilnImage string
	// Stdin feeds a tar://stdin context to the dry-run's context check.
	Stdin io.Reader
}

// New returns a Migrator that probes this machine.
func New() *Migrator { return &Migrator{} }

// DryRun checks an invocation as a build would, without building or
// pushing, and writes the report (--migration-report text or json). It
// returns 0 when kiln would run it as is, 3 when something must change and
// 1 when the invocation is invalid.
func (m *Migrator) DryRun(ctx context.Context, inv *flagmap.Invocation, out io.Writer) int {
	r := m.analyse(inv, true)
	if err := writeReport(r, inv.Options.MigrationReport, out); err != nil {
		return 1
	}
	return r.ExitCode
}

func writeReport(r *Report, format string, out io.Writer) error {
	if format == "json" {
		return r.WriteJSON(out)
	}
	return r.WriteText(out)
}

// analyse builds the report. Without local checks (scan) it stops after
// what the command line alone shows: no context, Dockerfile, credential or
// environment checks.
func (m *Migrator) analyse(inv *flagmap.Invocation, local bool) *Report {
	r := &Report{SchemaVersion: SchemaVersion, Flags: flagReports(inv)}
	defer r.finish()
	for _, w := range inv.Warnings {
		r.note(SeverityWarning, "flags", "%s", w)
	}
	for _, n := range inv.Notices() {
		r.note(SeverityInfo, "no-effect", "%s", n)
	}
	opts := &inv.Options
	if err := inv.Validate(); err != nil {
		var ue *flagmap.UsageError
		if !errors.As(err, &ue) || !isUnsupported(ue.Flag) {
			r.Error = err.Error()
			return r
		}
		r.note(SeverityError, "unsupported", "%s", err)
	}
	src, err := compat.ClassifyContext(opts)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.Context = &ContextReport{Flag: src.Flag, Value: redactURL(src.Value), Scheme: src.Scheme, Credentials: compat.ContextCredentialSource(src)}
	if opts.ContextSubPath != "" && src.Scheme == "" {
		r.note(SeverityWarning, "context", "--context-sub-path %s is ignored because --context is a local directory (Kaniko ignores it too); use --context=dir://%s to apply it", opts.ContextSubPath, src.Path)
	}
	if !local {
		if err := flagmap.ValidateNameFiles(opts); err != nil {
			r.Error = err.Error()
			return r
		}
		m.checkDestinations(r, opts, false)
		return r
	}

	ctxDir := ""
	bc, err := compat.ResolveContext(context.Background(), opts, m.Stdin)
	switch {
	case err == nil:
		defer bc.Cleanup()
		ctxDir = bc.Dir
		r.Context.Dir = bc.Dir
	case src.Scheme == "" || src.Scheme == "dir":
		r.Error = err.Error()
		return r
	default:
		r.note(SeverityError, "context", "%s", redactURL(err.Error()))
	}
	dockerfile, err := compat.ResolveDockerfile(opts, ctxDir)
	if err != nil && ctxDir != "" {
		r.Error = err.Error()
		return r
	}
	if err != nil {
		r.note(SeverityWarning, "dockerfile", "cannot check --dockerfile %s before the context is fetched", opts.Dockerfile)
	} else {
		m.checkDockerfile(r, opts, dockerfile, ctxDir)
	}
	if err := flagmap.ValidateNameFiles(opts); err != nil {
		r.Error = err.Error()
		return r
	}
	if m.checkDestinations(r, opts, true); r.Error != "" {
		return r
	}
	checkBuildInputs(r, inv)
	if opts.BuildkitHost != "" {
		r.note(SeverityInfo, "environment", "--buildkit-host is set: kiln starts no daemon here, so the environment needs no extra privileges")
		return r
	}
	probe := m.Probe
	if probe.StateDir == "" {
		probe.StateDir = compat.KanikoDir(opts)
	}
	probe.Mode, probe.Force = opts.BuildkitMode, opts.Force
	r.Preflight = probe.Run()
	return r
}

func isUnsupported(flag string) bool {
	row := flagmap.Lookup(strings.TrimPrefix(flag, "--"))
	return row != nil && row.Target().Disposition == flagmap.Unsupported
}

// redactURL hides user:password@ in URLs inside s.
func redactURL(s string) string {
	words := strings.Fields(s)
	for _, w := range words {
		u, err := url.Parse(strings.TrimRight(w, ":;,"))
		if err == nil && u.User != nil {
			s = strings.ReplaceAll(s, u.User.String()+"@", "***@")
		}
	}
	return s
}

func (m *Migrator) checkDockerfile(r *Report, opts *flagmap.Options, path, ctxDir string) {
	df, err := compat.ParseDockerfile(path, opts.BuildArgs)
	if err != nil {
		r.note(SeverityError, "dockerfile", "%s", err)
		return
	}
	rep := &DockerfileReport{Path: path, Stages: len(df.Stages), BaseImages: df.BaseImages(), Target: opts.Target}
	if rep.BaseImages == nil {
		rep.BaseImages = []string{}
	}
	if ignore, ok := compat.DockerignorePath(path, ctxDir); ok {
		rep.Ignore = ignore
	}
	r.Dockerfile = rep
	for _, w := range df.Warnings {
		r.note(SeverityInfo, "dockerfile", "%s", w)
	}
	if df.Syntax != "" {
		r.note(SeverityWarning, "dockerfile", "the '# syntax=%s' line was ignored by Kaniko; BuildKit honours it and pulls that frontend image", df.Syntax)
	}
	stages, err := df.KanikoStages(opts.Target, opts.SkipUnusedStages)
	if err != nil {
		r.note(SeverityError, "dockerfile", "%s", err)
		return
	}
	for _, s := range stages {
		rep.BuiltStages = append(rep.BuiltStages, stageLabel(s))
	}
}

func stageLabel(s compat.Stage) string {
	if s.Name != "" {
		return fmt.Sprintf("%d (%s)", s.Index, s.Name)
	}
	return fmt.Sprint(s.Index)
}

// checkDestinations parses each registry the build pushes to and, with
// local checks, says where its credential comes from.
func (m *Migrator) checkDestinations(r *Report, opts *flagmap.Options, local bool) {
	type target struct{ ref, purpose string }
	var targets []target
	if !opts.NoPush {
		for _, d := range opts.Destinations {
			targets = append(targets, target{d, "push"})
		}
	}
	if opts.Cache && !opts.NoPushCache && !strings.HasPrefix(opts.CacheRepo, "oci:") {
		repo := opts.CacheRepo
		if repo == "" && len(opts.Destinations) > 0 {
			repo = opts.Destinations[0]
		}
		if repo != "" {
			targets = append(targets, target{repo, "cache"})
		}
	}
	dockerConfig := compat.DockerConfigDir(opts)
	seen := map[string]bool{}
	for _, t := range targets {
		if strings.Contains(t.ref, "$") {
			continue // expanded at run time
		}
		ref, err := name.ParseReference(t.ref, name.WeakValidation)
		if err != nil {
			r.Error = fmt.Sprintf("--destination %s: not an image reference (%v); write it as registry/repository[:tag]", t.ref, err)
			return
		}
		host := ref.Context().RegistryStr()
		if !local || seen[host+t.purpose] {
			continue
		}
		seen[host+t.purpose] = true
		source, found := compat.CredentialSource(compat.CredentialOptions{DockerConfigDir: dockerConfig, Helpers: opts.CredentialHelpers}, host)
		r.Credentials = append(r.Credentials, CredentialCheck{Registry: host, For: t.purpose, Source: source, Found: found})
		if !found {
			r.note(SeverityWarning, "credentials", "%s: %s", host, source)
		}
	}
}

// checkBuildInputs reads what a build would read at start (--secret sources,
// Kimia's --git-token-file) so that a missing one is found now; values are
// never shown.
func checkBuildInputs(r *Report, inv *flagmap.Invocation) {
	opts := inv.Options
	if err := flagmap.ReadGitTokenFile(&opts); err != nil {
		r.note(SeverityError, "git", "%s", err)
	}
	if opts.Sign {
		if _, err := os.Stat(opts.CosignKey); err != nil {
			r.note(SeverityError, "signing", "--cosign-key %s: cannot read it; mount the cosign private key there or point --cosign-key at it", opts.CosignKey)
		}
	}
	secrets, err := flagmap.ParseSecrets(opts.Secrets, inv.Getenv)
	if err == nil {
		_, err = flagmap.ReadSecrets(secrets, inv.Getenv)
	}
	if err != nil {
		r.note(SeverityError, "secrets", "%s", err)
		return
	}
	for _, s := range secrets {
		source := "file " + s.File
		if s.Env != "" {
			source = "variable " + s.Env
		}
		r.note(SeverityInfo, "secrets", "secret %s comes from the %s and is readable", s.ID, source)
	}
}
