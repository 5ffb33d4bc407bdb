package flagmap

import (
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// kanikoSpellings are the long flag spellings Kaniko v1.23.2's executor accepts.
var kanikoSpellings = []string{
	"dockerfile", "context", "context-sub-path", "bucket", "git", "build-arg", "target", "skip-unused-stages",
	"custom-platform", "label", "destination", "no-push", "tar-path", "oci-layout-path", "digest-file",
	"image-name-with-digest-file", "image-name-tag-with-digest-file", "push-retry",
	"push-ignore-immutable-tag-errors", "skip-push-permission-check", "cache", "cache-repo", "cache-dir",
	"cache-ttl", "cache-copy-layers", "cache-run-layers", "no-push-cache", "compressed-caching",
	"snapshot-mode", "single-snapshot", "use-new-run", "ignore-path", "ignore-var-run", "force-build-metadata",
	"cleanup", "kaniko-dir", "image-fs-extract-retry", "image-download-retry", "force", "reproducible",
	"compression", "compression-level", "insecure", "insecure-pull", "insecure-registry", "skip-tls-verify",
	"skip-tls-verify-pull", "skip-tls-verify-registry", "registry-certificate", "registry-client-cert",
	"registry-map", "registry-mirror", "skip-default-registry-fallback", "verbosity", "log-format",
	"log-timestamp", "snapshotMode", "customPlatform", "tarPath", "whitelist-var-run",
}

func TestTableCoversKanikoExactly(t *testing.T) {
	if len(kanikoSpellings) != 60 {
		t.Fatalf("test list has %d spellings, want Kaniko's 60", len(kanikoSpellings))
	}
	var kaniko, visible, hidden []string
	for _, f := range Table {
		if f.Kiln || f.CommandLine != Kaniko {
			continue
		}
		kaniko = append(kaniko, f.Name)
		if f.Hidden {
			hidden = append(hidden, f.Name)
		} else {
			visible = append(visible, f.Name)
		}
	}
	want := append(append([]string{}, kanikoSpellings...), "azure-container-registry-config")
	sort.Strings(want)
	sort.Strings(kaniko)
	if !reflect.DeepEqual(kaniko, want) {
		t.Errorf("Kaniko spellings in table:\n%v\nwant:\n%v", kaniko, want)
	}
	if len(visible) != 58 {
		t.Errorf("visible Kaniko spellings = %d, want 58", len(visible))
	}
	sort.Strings(hidden)
	if wantHidden := []string{"azure-container-registry-config", "bucket", "whitelist-var-run"}; !reflect.DeepEqual(hidden, wantHidden) {
		t.Errorf("hidden = %v, want %v", hidden, wantHidden)
	}
	shorts := map[string]string{}
	for _, f := range Table {
		if f.Shorthand != "" {
			shorts[f.Shorthand] = f.Name
		}
	}
	// -t is Kimia's; Kaniko has the other five.
	wantShorts := map[string]string{"f": "dockerfile", "c": "context", "d": "destination", "v": "verbosity", "b": "bucket", "t": "target"}
	if !reflect.DeepEqual(shorts, wantShorts) {
		t.Errorf("shorthands = %v, want %v", shorts, wantShorts)
	}
	var kiln []string
	for _, f := range Table {
		if f.Kiln {
			kiln = append(kiln, f.Name)
		}
	}
	if want := []string{"buildkit-host", "buildkit-mode", "migration-dry-run", "migration-report"}; !reflect.DeepEqual(kiln, want) {
		t.Errorf("kiln flags = %v, want %v", kiln, want)
	}
}

func TestTableRowsAreComplete(t *testing.T) {
	seen := map[string]bool{}
	var opts Options
	for i := range Table {
		f := &Table[i]
		if seen[f.Name] {
			t.Errorf("--%s listed twice", f.Name)
		}
		seen[f.Name] = true
		if f.Usage == "" {
			t.Errorf("--%s has no usage text", f.Name)
		}
		if f.AliasOf != "" {
			if f.Field != nil || f.Disposition != "" {
				t.Errorf("alias --%s must take field and disposition from --%s", f.Name, f.AliasOf)
			}
			target := Lookup(f.AliasOf)
			if target == nil || target.AliasOf != "" || target.Kind != f.Kind {
				t.Errorf("alias --%s points at %q, which is not a flag of the same kind", f.Name, f.AliasOf)
			}
			continue
		}
		switch f.Disposition {
		case Native, Emulated:
			if f.BuildKit == "" {
				t.Errorf("--%s (%s) does not say what it becomes", f.Name, f.Disposition)
			}
		case NoOp, Unsupported:
			if f.Reason == "" {
				t.Errorf("--%s (%s) has no reason", f.Name, f.Disposition)
			}
		default:
			t.Errorf("--%s has disposition %q", f.Name, f.Disposition)
		}
		if (f.Env == "") != (f.EnvRule == "") {
			t.Errorf("--%s: Env %q with EnvRule %q", f.Name, f.Env, f.EnvRule)
		}
		if f.Kind == Enum && len(f.Values) == 0 {
			t.Errorf("--%s is an enum without values", f.Name)
		}
		if f.EnvOnly {
			if f.Field != nil || f.Env != f.Name || f.Kind != Bool || f.CommandLine == Kaniko {
				t.Errorf("variable row %s must be a fork's boolean variable without a field", f.Name)
			}
			continue
		}
		if f.EnvRule == EnvDefault && f.Kind != Bool {
			t.Errorf("--%s: EnvDefault is for booleans only", f.Name)
		}
		if f.Field == nil {
			t.Fatalf("--%s has no Options field", f.Name)
		}
		want := map[Kind]reflect.Type{
			String: reflect.TypeOf(new(string)), Enum: reflect.TypeOf(new(string)), Bool: reflect.TypeOf(new(bool)),
			Int: reflect.TypeOf(new(int)), Duration: reflect.TypeOf(new(time.Duration)), Multi: reflect.TypeOf(new([]string)),
			KeyValue: reflect.TypeOf(new(map[string]string)), MultiKeyMap: reflect.TypeOf(new(map[string][]string)),
			GitKind: reflect.TypeOf(new(GitOptions)),
		}[f.Kind]
		if got := reflect.TypeOf(f.Field(&opts)); got != want {
			t.Errorf("--%s of kind %s binds a %v, want %v", f.Name, f.Kind, got, want)
		}
	}
}

// Two rows binding the same field would make one of them silently lose.
func TestEachFieldHasOneFlag(t *testing.T) {
	var opts Options
	owner := map[any]string{}
	for _, f := range Table {
		if f.Field == nil {
			continue
		}
		ptr := reflect.ValueOf(f.Field(&opts)).Pointer()
		if other, dup := owner[ptr]; dup {
			t.Errorf("--%s and --%s bind the same Options field", f.Name, other)
		}
		owner[ptr] = f.Name
	}
}

func TestHelpListsVisibleFlagsOnly(t *testing.T) {
	help := HelpFlags()
	for _, f := range Table {
		if f.EnvOnly {
			if strings.Contains(help, f.Name) {
				t.Errorf("variable %s listed as a flag in help", f.Name)
			}
			continue
		}
		listed := strings.Contains(help, "--"+f.Name+" ") || strings.Contains(help, "--"+f.Name+"[")
		if listed == f.Hidden {
			t.Errorf("--%s hidden=%v but listed in help=%v", f.Name, f.Hidden, listed)
		}
	}
	if got := strings.Count(help, "\n  -") + strings.Count(help, "\n      --"); got != 58+len(forkSpellings)+len(kimiaSpellings)+4 {
		t.Errorf("help lists %d flags, want 58 Kaniko + %d fork + %d Kimia + 4 kiln:\n%s", got, len(forkSpellings), len(kimiaSpellings), help)
	}
}

// forkSpellings and kimiaSpellings are the flags the maintained fork
// (v1.28.3) and Kimia (v1.0.25) add to Kaniko's, except the fork's
// --credential-helpers (registry credentials).
var (
	forkSpellings  = []string{"secret", "annotation", "preserve-context", "pre-cleanup", "materialize", "image-format", "dryrun", "credential-helpers"}
	kimiaSpellings = []string{"timestamp", "git-branch", "git-revision", "git-token-file", "git-token-user", "import-cache",
		"export-cache", "storage-driver", "buildkit-opt", "buildah-opt", "attestation", "attest", "sign", "cosign-key",
		"cosign-password-env", "scan", "harden"}
)

func TestTableCoversOtherCommandLines(t *testing.T) {
	for _, tc := range []struct {
		from CommandLine
		want []string
	}{{KanikoFork, forkSpellings}, {Kimia, kimiaSpellings}} {
		var got []string
		for _, f := range Table {
			if f.CommandLine == tc.from && !f.EnvOnly {
				got = append(got, f.Name)
			}
		}
		sort.Strings(got)
		want := append([]string{}, tc.want...)
		sort.Strings(want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s spellings = %v, want %v", tc.from, got, want)
		}
	}
	var ff int
	for _, f := range Table {
		if f.EnvOnly && strings.HasPrefix(f.Name, "FF_KANIKO_") {
			ff++
		}
	}
	if ff != 37 {
		t.Errorf("%d FF_KANIKO_* variables in the table, want the fork's 37", ff)
	}
}
