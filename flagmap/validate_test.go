package flagmap

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		wantFlag string // "" means valid
		want     string
	}{
		{"destination given", []string{"-d", "reg/img"}, "", ""},
		{"no-push given", []string{"--no-push"}, "", ""},
		{"neither destination nor no-push", nil, "--destination", "you must provide --destination, or use --no-push"},
		{"cache with no-push needs cache-repo", []string{"--no-push", "--cache"}, "--cache-repo", "cache flags invalid: if using cache with --no-push, specify cache repo with --cache-repo"},
		{"cache with no-push and cache-repo", []string{"--no-push", "--cache", "--cache-repo=reg/cache"}, "", ""},
		{"cache with destination infers the repo", []string{"-d", "reg/img", "--cache"}, "", ""},
		{"label without equals", []string{"--no-push", "--label=ok=1", "--label", "broken"}, "--label", "labels must be of the form key=value, got broken"},
		{"label with empty value", []string{"--no-push", "--label=k="}, "", ""},
		{"platform with too many parts", []string{"--no-push", "--custom-platform=foo/bar/baz/qux"}, "--custom-platform", `Invalid platform "foo/bar/baz/qux"`},
		{"platform via deprecated spelling", []string{"--no-push", "--customPlatform=a/b/c/d"}, "--custom-platform", `Invalid platform "a/b/c/d"`},
		{"platform with variant", []string{"--no-push", "--custom-platform=linux/arm/v7"}, "", ""},
		{"bad verbosity", []string{"--no-push", "-v", "loud"}, "--verbosity", `--verbosity="loud" is not a log level`},
		{"bad log format", []string{"--no-push", "--log-format=xml"}, "--log-format", `--log-format="xml" is not a log format`},
		{"bad snapshot mode", []string{"--no-push", "--snapshot-mode=fast"}, "--snapshot-mode", "fast is not a valid snapshot mode"},
		{"client cert without comma", []string{"--no-push", "--registry-client-cert=reg=/cert.pem"}, "--registry-client-cert", "expected format reg=/path/to/cert,/path/to/key"},
		{"client cert with cert and key", []string{"--no-push", "--registry-client-cert=reg=/c.pem,/k.pem"}, "", ""},
		{"stray positional", []string{"--no-push", "false"}, "", `unexpected argument "false"`},
		{"empty positionals tolerated", []string{"", "--no-push", ""}, "", ""},
		{"bucket used with a remote context", []string{"--no-push", "-b", "bkt", "--context=gs://x"}, "", ""},
		{"bucket used with an empty context", []string{"--no-push", "--bucket=bkt", "--context="}, "", ""},
		{"bucket ignored with a local context", []string{"--no-push", "--bucket=bkt"}, "", ""},
		{"order: destination before cache", []string{"--cache"}, "--destination", "you must provide --destination"},
		{"order: platform before destination", []string{"--custom-platform=a/b/c/d"}, "--custom-platform", "Invalid platform"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inv := mustParse(t, c.args, nil)
			err := inv.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("Validate = %v, want UsageError containing %q", err, c.want)
			}
			if !strings.Contains(ue.Error(), c.want) || ue.Flag != c.wantFlag || strings.Contains(ue.Error(), "\n") {
				t.Errorf("Validate = %q (flag %q), want one line containing %q (flag %q)", ue, ue.Flag, c.want, c.wantFlag)
			}
		})
	}
}

func TestBucketIgnoredWarns(t *testing.T) {
	inv := mustParse(t, []string{"--no-push", "-b", "bkt"}, nil)
	if err := inv.Validate(); err != nil {
		t.Fatal(err)
	}
	wantWarning(t, inv, "--bucket is ignored")
}

func TestValidateNameFiles(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--no-push", "--digest-file=d"}, ""},
		{[]string{"--no-push", "--image-name-with-digest-file=f"}, "you must provide --destination if setting ImageNameDigestFile"},
		{[]string{"--no-push", "--image-name-tag-with-digest-file=f"}, "you must provide --destination if setting ImageNameTagDigestFile"},
		{[]string{"--no-push", "-d", "reg/img", "--image-name-with-digest-file=f", "--image-name-tag-with-digest-file=g"}, ""},
	}
	for _, c := range cases {
		err := ValidateNameFiles(&mustParse(t, c.args, nil).Options)
		if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("ValidateNameFiles(%q) = %v, want %q", c.args, err, c.want)
		}
	}
}

func TestNotices(t *testing.T) {
	inv := mustParse(t, []string{"--no-push", "--snapshotMode=redo", "--snapshot-mode=time", "--cache-run-layers=true", "--single-snapshot", "--ignore-path=/x", "--reproducible"}, nil)
	got := strings.Join(inv.Notices(), "\n")
	for _, want := range []string{"--snapshotMode has no effect", "--single-snapshot has no effect"} {
		if !strings.Contains(got, want) {
			t.Errorf("notices %q lack %q", got, want)
		}
	}
	for _, unwanted := range []string{"--snapshot-mode has", "--cache-run-layers", "--reproducible", "--no-push", "--ignore-path"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("notices %q mention %q", got, unwanted)
		}
	}
}
