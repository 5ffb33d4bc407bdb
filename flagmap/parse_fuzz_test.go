package flagmap

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// fuzzSecret is a --build-arg value every fuzzed command line carries.
const fuzzSecret = "kiln-fuzz-secret-4471"

// FuzzParse: any command line and environment. Parsing never panics; a
// refusal is a one-line UsageError (exit 1); the --build-arg value shows
// in no error, warning, notice or redacted value; and the flags as
// recorded (Given) parse back to the same Options.
func FuzzParse(f *testing.F) {
	f.Add("--context=dir:///w\x00--destination=r/x:1\x00--build-arg=A=1\x00--no-push", "KANIKO_NO_PUSH=true")
	f.Add("--snapshotMode=time\x00--snapshot-mode=redo\x00--snapshotMode=full", "")
	f.Add("-f\x00Dockerfile\x00-c\x00.\x00-d\x00reg/img\x00--cache=true\x00--cache-ttl=1h", "SOURCE_DATE_EPOCH=12")
	f.Add("--label\x00novalue\x00--verbosity=loud\x00--custom-platform=linux/amd64/v2/x", "")
	f.Add("--registry-map=index.docker.io=mirror;other=https://u:p@m\x00--registry-mirror=m2", "KANIKO_REGISTRY_MIRROR=m3")
	f.Add("--no-push\x00false\x00--destination", "")
	f.Add("--git=branch=main,single-branch=true\x00--context=git://u:tok@h/r.git\x00--cache-repo=r/c", "GIT_TOKEN=t")
	f.Add("--insecure-skip-tls-verify\x00-Z\x00--help", "")
	f.Add("--secret=id=a,env=B\x00--compression-level=x\x00--push-retry=-3", "")
	f.Fuzz(func(t *testing.T, line, environ string) {
		if strings.Contains(line+environ, fuzzSecret) {
			return
		}
		args := append([]string{"--build-arg=TOKEN=" + fuzzSecret}, strings.Split(line, "\x00")...)
		env := map[string]string{}
		for kv := range strings.SplitSeq(environ, "\n") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
		inv, err := Parse(args, envOf(env))
		if errors.Is(err, ErrHelp) {
			return
		}
		if err != nil {
			checkUsageError(t, "Parse", err)
			return
		}
		again, err := Parse(args, envOf(env))
		if err != nil || !reflect.DeepEqual(again.Options, inv.Options) {
			t.Fatalf("a second Parse of the same line differs (%v)", err)
		}
		if err := inv.Validate(); err != nil {
			checkUsageError(t, "Validate", err)
		}
		shown := append(append([]string(nil), inv.Warnings...), inv.Notices()...)
		for _, g := range inv.Given {
			shown = append(shown, g.Redacted()...)
		}
		for _, s := range shown {
			if strings.Contains(s, fuzzSecret) {
				t.Errorf("the --build-arg value shows in %q", s)
			}
		}

		var given []string
		for _, g := range inv.Given {
			if strings.HasPrefix(g.Spelling, "--") {
				for _, v := range g.Values {
					given = append(given, g.Spelling+"="+v)
				}
			}
		}
		given = append(append(given, "--"), inv.Positional...)
		back, err := Parse(given, envOf(env))
		if err != nil {
			t.Fatalf("the recorded flags %q do not parse again: %v", given, err)
		}
		if !reflect.DeepEqual(back.Options, inv.Options) {
			t.Errorf("the recorded flags %q parse to other options than %q:\n%+v\n%+v", given, args, back.Options, inv.Options)
		}
	})
}

func checkUsageError(t *testing.T, step string, err error) {
	t.Helper()
	var usage *UsageError
	if !errors.As(err, &usage) {
		t.Fatalf("%s: %T %v, want a UsageError", step, err, err)
	}
	msg := err.Error()
	if msg == "" || strings.ContainsAny(msg, "\n\r") || usage.ExitCode() != 1 {
		t.Errorf("%s: %q (exit %d): want one line, exit 1", step, msg, usage.ExitCode())
	}
	if strings.Contains(msg, fuzzSecret) {
		t.Errorf("%s: the --build-arg value shows in %q", step, msg)
	}
}
