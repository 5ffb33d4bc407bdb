package flagmap

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func envOf(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func mustParse(t *testing.T, args []string, env map[string]string) *Invocation {
	t.Helper()
	inv, err := Parse(args, envOf(env))
	if err != nil {
		t.Fatalf("Parse(%q): %v", args, err)
	}
	return inv
}

func TestDefaultsMatchKaniko(t *testing.T) {
	o := mustParse(t, nil, nil).Options
	checks := []struct {
		name      string
		got, want any
	}{
		{"dockerfile", o.Dockerfile, "Dockerfile"},
		{"context", o.Context, "/workspace/"},
		{"cache-dir", o.CacheDir, "/cache"},
		{"cache-ttl", o.CacheTTL, 336 * time.Hour},
		{"cache-run-layers", o.CacheRunLayers, true},
		{"compressed-caching", o.CompressedCaching, true},
		{"ignore-var-run", o.IgnoreVarRun, true},
		{"compression", o.Compression, ""},
		{"compression-level", o.CompressionLevel, -1},
		{"kaniko-dir", o.KanikoDir, "/kaniko"},
		{"snapshot-mode", o.SnapshotMode, "full"},
		{"verbosity", o.Verbosity, "info"},
		{"log-format", o.LogFormat, "color"},
		{"migration-report", o.MigrationReport, "text"},
		{"custom-platform", o.CustomPlatform, DefaultPlatform()},
		{"no-push", o.NoPush, false},
		{"DOCKER_CONFIG", o.Env.DockerConfig, "/kaniko/.docker"},
		{"GIT_PULL_METHOD", o.Env.GitPullMethod, "https"},
		{"git", o.Git, GitOptions{}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("default %s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
	if strings.Count(DefaultPlatform(), "/") < 1 {
		t.Errorf("DefaultPlatform() = %q, want os/arch", DefaultPlatform())
	}
}

// Every Kaniko spelling parses and changes its Options field away from the default.
func TestEveryKanikoSpellingParses(t *testing.T) {
	sample := map[Kind]string{String: "x", Bool: "true", Int: "3", Duration: "6h", Multi: "a=b",
		KeyValue: "reg=/a,/b", MultiKeyMap: "reg=mirror", GitKind: "branch=main"}
	for _, name := range append(kanikoSpellings, "azure-container-registry-config", "buildkit-host", "buildkit-mode", "migration-dry-run", "migration-report") {
		row := Lookup(name)
		if row == nil {
			t.Errorf("--%s missing from table", name)
			continue
		}
		val := sample[row.Kind]
		switch {
		case row.Kind == Enum:
			val = row.Values[len(row.Values)-1]
		case row.Kind == Bool && row.Default == "true":
			val = "false"
		}
		inv := mustParse(t, []string{"--" + name + "=" + val}, nil)
		before := mustParse(t, nil, nil)
		target := row.Target()
		got := reflect.ValueOf(target.Field(&inv.Options)).Elem().Interface()
		def := reflect.ValueOf(target.Field(&before.Options)).Elem().Interface()
		if reflect.DeepEqual(got, def) {
			t.Errorf("--%s=%s left %s at its default %#v", name, val, target.Name, def)
		}
		if len(inv.Given) != 1 || inv.Given[0].Spelling != "--"+name || inv.Given[0].Values[0] != val {
			t.Errorf("--%s=%s recorded as %+v", name, val, inv.Given)
		}
	}
}

func TestParse(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, inv *Invocation)
	}{
		{"destination is not split on commas", []string{"-d", "a,b", "--destination=c"}, nil, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.Destinations, []string{"a,b", "c"})
		}},
		{"repeatable flags keep order and are verbatim", []string{"--build-arg", "A=1,2", "--label=k=v=w", "--build-arg=B= x ", "--insecure-registry", "r1,r2", "--skip-tls-verify-registry", "s", "--ignore-path", "/a,/b"}, nil, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.BuildArgs, []string{"A=1,2", "B= x "})
			eq(t, inv.Options.Labels, []string{"k=v=w"})
			eq(t, inv.Options.InsecureRegistries, []string{"r1,r2"})
			eq(t, inv.Options.SkipTLSVerifyRegistries, []string{"s"})
			eq(t, inv.Options.IgnorePaths, []string{"/a,/b"})
		}},
		{"registry-map splits on semicolons and appends per key", []string{"--registry-map=index.docker.io=m1;gcr.io=g1;;", "--registry-map", "index.docker.io=m2"}, nil, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.RegistryMaps, map[string][]string{"index.docker.io": {"m1", "m2"}, "gcr.io": {"g1"}})
		}},
		{"later registry-certificate key wins", []string{"--registry-certificate", "r=/a.pem", "--registry-certificate=r=/b.pem", "--registry-certificate=q=/c=d.pem"}, nil, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.RegistryCertificates, map[string]string{"r": "/b.pem", "q": "/c=d.pem"})
		}},
		{"later registry-client-cert key wins", []string{"--registry-client-cert=r=/1,/2", "--registry-client-cert=r=/3,/4"}, nil, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.RegistryClientCerts, map[string]string{"r": "/3,/4"})
		}},
		{"bare build-arg reads the environment, unset gives empty", []string{"--build-arg", "HTTP_PROXY", "--build-arg=UNSET", "--build-arg", "X=1"}, map[string]string{"HTTP_PROXY": "http://p:3128"}, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.BuildArgs, []string{"HTTP_PROXY=http://p:3128", "UNSET=", "X=1"})
			eq(t, inv.Given[0].Values, []string{"HTTP_PROXY", "UNSET", "X=1"})
		}},
		{"bare boolean", []string{"--no-push"}, nil, func(t *testing.T, inv *Invocation) { eq(t, inv.Options.NoPush, true) }},
		{"boolean =true", []string{"--no-push=true"}, nil, func(t *testing.T, inv *Invocation) { eq(t, inv.Options.NoPush, true) }},
		{"boolean =false turns a default-true flag off", []string{"--cache-run-layers=false", "--ignore-var-run=0"}, nil, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.CacheRunLayers, false)
			eq(t, inv.Options.IgnoreVarRun, false)
		}},
		{"boolean ParseBool spellings", []string{"--cache=T", "--insecure=1", "--reproducible=TRUE", "--cleanup=F"}, nil, func(t *testing.T, inv *Invocation) {
			eq(t, []bool{inv.Options.Cache, inv.Options.Insecure, inv.Options.Reproducible, inv.Options.Cleanup}, []bool{true, true, true, false})
		}},
		{"separate false after a boolean stays positional", []string{"--no-push", "false"}, nil, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.NoPush, true)
			eq(t, inv.Positional, []string{"false"})
		}},
		{"empty positional arguments are kept for tolerance", []string{"", "--no-push", ""}, nil, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Positional, []string{"", ""})
		}},
		{"double dash ends flags", []string{"--no-push", "--", "--cache"}, nil, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.Cache, false)
			eq(t, inv.Positional, []string{"--cache"})
		}},
		{"shorthands with space and equals", []string{"-f", "a/Dockerfile", "-c=dir:///src", "-d", "reg/img", "-v=debug", "-b", "bkt"}, nil, func(t *testing.T, inv *Invocation) {
			o := inv.Options
			eq(t, []string{o.Dockerfile, o.Context, o.Destinations[0], o.Verbosity, o.Bucket}, []string{"a/Dockerfile", "dir:///src", "reg/img", "debug", "bkt"})
		}},
		{"empty target is unset", []string{"--target", ""}, nil, func(t *testing.T, inv *Invocation) { eq(t, inv.Options.Target, "") }},
		{"git options, one per use", []string{"--git", "branch=main", "--git=single-branch=true", "--git", "recurse-submodules=true", "--git=insecure-skip-tls=true"}, nil, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.Git, GitOptions{Branch: "main", SingleBranch: true, RecurseSubmodules: true, InsecureSkipTLS: true})
		}},
		{"unknown git key is ignored with a warning", []string{"--git=depth=1"}, nil, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.Git, GitOptions{})
			wantWarning(t, inv, `--git: unknown key "depth" ignored`)
		}},
		{"durations, ints, enums", []string{"--cache-ttl=6h", "--push-retry", "3", "--compression-level=9", "--compression", "zstd"}, nil, func(t *testing.T, inv *Invocation) {
			o := inv.Options
			eq(t, []any{o.CacheTTL, o.PushRetry, o.CompressionLevel, o.Compression}, []any{6 * time.Hour, 3, 9, "zstd"})
		}},
		{"snapshotMode warns and sets snapshot-mode", []string{"--snapshotMode=redo"}, nil, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.SnapshotMode, "redo")
			wantWarning(t, inv, "Flag --snapshotMode is deprecated. Use: --snapshot-mode")
		}},
		{"customPlatform warns and sets custom-platform", []string{"--customPlatform", "linux/arm64"}, nil, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.CustomPlatform, "linux/arm64")
			wantWarning(t, inv, "Flag --customPlatform is deprecated. Use: --custom-platform")
		}},
		{"tarPath warns and sets tar-path", []string{"--tarPath=/out/image.tar"}, nil, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.TarPath, "/out/image.tar")
			wantWarning(t, inv, "Flag --tarPath is deprecated. Use: --tar-path")
		}},
		{"whitelist-var-run warns and sets ignore-var-run", []string{"--whitelist-var-run=false"}, nil, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.IgnoreVarRun, false)
			wantWarning(t, inv, "Flag --whitelist-var-run is deprecated. Use: --ignore-var-run")
		}},
		{"KANIKO_NO_PUSH=true sets no-push", nil, map[string]string{"KANIKO_NO_PUSH": "true"}, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.NoPush, true)
			eq(t, inv.Given[len(inv.Given)-1].Spelling, "env KANIKO_NO_PUSH")
		}},
		{"KANIKO_NO_PUSH=false overrides --no-push like Kaniko", []string{"--no-push"}, map[string]string{"KANIKO_NO_PUSH": "false"}, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.NoPush, false)
		}},
		{"unparsable KANIKO_NO_PUSH counts as false, with a warning", []string{"--no-push"}, map[string]string{"KANIKO_NO_PUSH": "yes"}, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.NoPush, false)
			wantWarning(t, inv, `KANIKO_NO_PUSH="yes" is not true or false`)
		}},
		{"env merging order: flags, then KANIKO_REGISTRY_MAP, then mirrors as index.docker.io maps", []string{"--registry-mirror=m1", "--registry-map=index.docker.io=flagmap"}, map[string]string{"KANIKO_REGISTRY_MIRROR": "m2,m3", "KANIKO_REGISTRY_MAP": "index.docker.io=envmap;quay.io=q"}, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.RegistryMirrors, []string{"m1", "m2,m3"})
			eq(t, inv.Options.RegistryMaps, map[string][]string{"index.docker.io": {"flagmap", "envmap", "m1", "m2,m3"}, "quay.io": {"q"}})
		}},
		{"KANIKO_DIR applies when --kaniko-dir is not given", nil, map[string]string{"KANIKO_DIR": "/builder", "DOCKER_CONFIG": "/kaniko/.docker/"}, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.KanikoDir, "/builder")
			eq(t, inv.Options.Env.DockerConfig, "/builder/.docker")
		}},
		{"KANIKO_DIR applies when --kaniko-dir keeps the default, like Kaniko", []string{"--kaniko-dir=/kaniko"}, map[string]string{"KANIKO_DIR": "/builder"}, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.KanikoDir, "/builder")
		}},
		{"--kaniko-dir wins over KANIKO_DIR", []string{"--kaniko-dir=/flag"}, map[string]string{"KANIKO_DIR": "/builder"}, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.KanikoDir, "/flag")
			eq(t, len(inv.Given), 1)
		}},
		{"DOCKER_CONFIG is kept when the kaniko dir is not moved", nil, map[string]string{"DOCKER_CONFIG": "/tekton/home/.docker"}, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.Env.DockerConfig, "/tekton/home/.docker")
		}},
		{"kiln's environment", nil, map[string]string{"BUILDKIT_HOST": "tcp://bk:1234", "KILN_MIGRATION_DRY_RUN": "true"}, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.BuildkitHost, "tcp://bk:1234")
			eq(t, inv.Options.MigrationDryRun, true)
		}},
		{"--buildkit-host wins over BUILDKIT_HOST", []string{"--buildkit-host=unix:///run/bk.sock"}, map[string]string{"BUILDKIT_HOST": "tcp://bk:1234"}, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.BuildkitHost, "unix:///run/bk.sock")
		}},
		{"Kaniko's other environment", nil, map[string]string{"GIT_USERNAME": "u", "GIT_PASSWORD": "p", "GIT_TOKEN": "t", "GIT_PULL_METHOD": "http", "BUILDER_OUTPUT": "/out", "UPSTREAM_CLIENT_TYPE": "skaffold"}, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.Env, Environment{DockerConfig: "/kaniko/.docker", GitUsername: "u", GitPassword: "p", GitToken: "t", GitPullMethod: "http", BuilderOutput: "/out", UpstreamClientType: "skaffold"})
			for _, g := range inv.Given {
				t.Errorf("environment-only variable recorded as a flag: %+v", g)
			}
		}},
		{"SOURCE_DATE_EPOCH", []string{"--reproducible"}, map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}, func(t *testing.T, inv *Invocation) {
			if inv.Options.SourceDateEpoch == nil || *inv.Options.SourceDateEpoch != 1700000000 {
				t.Errorf("SourceDateEpoch = %v", inv.Options.SourceDateEpoch)
			}
		}},
		{"invalid SOURCE_DATE_EPOCH without --reproducible only warns", nil, map[string]string{"SOURCE_DATE_EPOCH": "yesterday"}, func(t *testing.T, inv *Invocation) {
			eq(t, inv.Options.SourceDateEpoch, (*int64)(nil))
			wantWarning(t, inv, `SOURCE_DATE_EPOCH="yesterday"`)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.check(t, mustParse(t, c.args, c.env)) })
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--insecure-skip-tls-verify"}, nil, "unknown flag: --insecure-skip-tls-verify; Kaniko split it into --skip-tls-verify"},
		{[]string{"--no-such-flag"}, nil, "unknown flag: --no-such-flag; run 'executor --help'"},
		{[]string{"-x"}, nil, "unknown shorthand flag: 'x' in -x"},
		{[]string{"--destination"}, nil, "flag needs an argument"},
		{[]string{"--compression=lz4"}, nil, `invalid argument "lz4" for "--compression" flag: must be either "gzip" or "zstd"`},
		{[]string{"--migration-report=yaml"}, nil, `must be either "text" or "json"`},
		{[]string{"--registry-certificate=nofile"}, nil, `"--registry-certificate" flag: must be key=value`},
		{[]string{"--registry-map=a=b;c"}, nil, `invalid argument "a=b;c" for "--registry-map" flag: each part must be registry=replacement`},
		{[]string{"--push-retry=many"}, nil, "must be a whole number"},
		{[]string{"--cache-ttl=6"}, nil, "must be a duration with a unit"},
		{[]string{"--no-push=maybe"}, nil, "must be true or false"},
		{[]string{"--git=main"}, nil, "must be key=value"},
		{[]string{"--git=single-branch=yes"}, nil, "single-branch must be true or false"},
		{[]string{"--reproducible"}, map[string]string{"SOURCE_DATE_EPOCH": "-5"}, "SOURCE_DATE_EPOCH=\"-5\" is not a Unix time"},
		{nil, map[string]string{"KILN_MIGRATION_DRY_RUN": "please"}, "KILN_MIGRATION_DRY_RUN=\"please\": must be true or false"},
		{nil, map[string]string{"KANIKO_REGISTRY_MAP": "nomap"}, "KANIKO_REGISTRY_MAP=\"nomap\""},
	}
	for _, c := range cases {
		inv, err := Parse(c.args, envOf(c.env))
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Errorf("Parse(%q) = %v, %v; want a UsageError", c.args, inv, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") || ue.ExitCode() != 1 {
			t.Errorf("Parse(%q) error %q, want one line containing %q", c.args, err, c.want)
		}
	}
}

func TestHelpRequested(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		if _, err := Parse([]string{"--no-push", arg}, nil); !errors.Is(err, ErrHelp) {
			t.Errorf("Parse(%s) = %v, want ErrHelp", arg, err)
		}
	}
}

func TestGivenRedacted(t *testing.T) {
	inv := mustParse(t, []string{"--build-arg=TOKEN=s3cret", "--build-arg", "BARE", "--context=git://user:pa55@github.com/o/r.git#main",
		"--registry-map=index.docker.io=https://u:pw@mirror.example/x;gcr.io=plain", "-d", "reg/img"}, nil)
	got := map[string][]string{}
	for _, g := range inv.Given {
		got[g.Spelling] = g.Redacted()
	}
	eq(t, got["--build-arg"], []string{"TOKEN=***", "BARE"})
	eq(t, got["--context"], []string{"git://***@github.com/o/r.git#main"})
	eq(t, got["--registry-map"], []string{"index.docker.io=https://***@mirror.example/x;gcr.io=plain"})
	eq(t, got["--destination"], []string{"reg/img"})
	// The raw values stay available to the engine.
	eq(t, inv.Options.BuildArgs[0], "TOKEN=s3cret")
}

func eq(t *testing.T, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}
}

func wantWarning(t *testing.T, inv *Invocation, substr string) {
	t.Helper()
	for _, w := range inv.Warnings {
		if strings.Contains(w, substr) {
			return
		}
	}
	t.Errorf("no warning containing %q in %q", substr, inv.Warnings)
}

func TestErrorsDoNotLeakCredentials(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"--registry-map=https://user:hunter2@mirror.example"}, nil},
		{nil, map[string]string{"KANIKO_REGISTRY_MAP": "https://user:hunter2@mirror.example"}},
	}
	for _, c := range cases {
		_, err := Parse(c.args, envOf(c.env))
		var ue *UsageError
		if !errors.As(err, &ue) || ue.Flag == "" {
			t.Errorf("Parse(%q, %v) = %v, want a UsageError naming the flag", c.args, c.env, err)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "***@mirror.example") {
			t.Errorf("error %q leaks or hides too much", err)
		}
	}
}

func TestPrintableEscapesWhatBreaksALine(t *testing.T) {
	for in, want := range map[string]string{
		"plain text é":     "plain text é",
		"a\nb\tc\x00":      `a\nb\tc\x00`,
		"bad \xff\xfe utf": `bad \xff\xfe utf`,
		"\u2028sep":        `\u2028sep`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}
