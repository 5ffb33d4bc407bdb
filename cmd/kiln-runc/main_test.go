package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnbuild/kiln/executor/ociruntime"
)

// asMainEnv makes the test binary run main, so the tests see the real
// process: exec, exit code and stderr.
const asMainEnv = "KILN_RUNC_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) != "" {
		main()
	}
	os.Exit(m.Run())
}

// runWrapper runs kiln-runc with args and runtime as the real runtime
// ("" leaves it unset).
func runWrapper(t *testing.T, runtime string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	if runtime != "" {
		cmd.Env = append(cmd.Env, ociruntime.RuntimeEnv+"="+runtime)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// fakeRuntime writes a runtime that records its arguments and the bundle's
// config.json as it found them (when there is one).
func fakeRuntime(t *testing.T, bundle string) (runtime, record string) {
	t.Helper()
	dir := t.TempDir()
	runtime, record = filepath.Join(dir, "runc"), filepath.Join(dir, "record")
	script := "#!/bin/sh\necho \"$0 $*\" > " + record + "\ncat " + filepath.Join(bundle, "config.json") + " >> " + record + " 2>/dev/null || true\n"
	if err := os.WriteFile(runtime, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return runtime, record
}

func TestRunRewritesThenExecsRuntime(t *testing.T) {
	bundle := t.TempDir()
	if err := os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	config := `{"process":{"env":["PATH=/bin","OTEL_TRACES_EXPORTER=otlp"],"user":{"uid":1001,"gid":50}},"root":{"path":"rootfs"}}`
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	runtime, record := fakeRuntime(t, bundle)
	args := []string{"--root", "/state", "--log-format", "json", "run", "--bundle", bundle, "--keep", "ctr"}
	if out, err := runWrapper(t, runtime, args...); err != nil {
		t.Fatalf("kiln-runc: %v: %s", err, out)
	}
	got, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	wantArgs := runtime + " " + strings.Join(args, " ") + "\n"
	wantConfig := `{"process":{"env":["PATH=/bin"],"user":{"gid":1001,"uid":1001}},"root":{"path":"rootfs"}}`
	if string(got) != wantArgs+wantConfig {
		t.Errorf("the runtime saw\n%s\nwant\n%s%s", got, wantArgs, wantConfig)
	}
}

func TestOtherCommandsPassThrough(t *testing.T) {
	runtime, record := fakeRuntime(t, t.TempDir())
	if out, err := runWrapper(t, runtime, "--root", "/state", "delete", "--force", "ctr"); err != nil {
		t.Fatalf("kiln-runc delete: %v: %s", err, out)
	}
	if got, _ := os.ReadFile(record); !strings.HasPrefix(string(got), runtime+" --root /state delete --force ctr\n") {
		t.Errorf("the runtime saw %q", got)
	}
}

func TestErrorsAreOneLine(t *testing.T) {
	bundle := t.TempDir()
	runtime, _ := fakeRuntime(t, bundle)
	for name, tc := range map[string]struct {
		runtime string
		want    string
	}{
		"runtime unset":    {"", "kiln-runc: KILN_OCI_RUNTIME is not set"},
		"no bundle config": {runtime, "kiln-runc: reading the OCI bundle config"},
	} {
		out, err := runWrapper(t, tc.runtime, "run", "--bundle", bundle, "ctr")
		if err == nil || !strings.HasPrefix(out, tc.want) || strings.Count(out, "\n") != 1 {
			t.Errorf("%s: err = %v, output %q; want a failure with one line starting %q", name, err, out, tc.want)
		}
	}
}
