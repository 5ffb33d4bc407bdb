package helper

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The helpers run as kiln-helper where it is installed, not as the
// executor binary.
func TestHelpersRunAsTheHelperProgram(t *testing.T) {
	bin := t.TempDir()
	called := filepath.Join(t.TempDir(), "called")
	script := "#!/bin/sh\necho \"$0 $*\" > " + called + "\n"
	if err := os.WriteFile(filepath.Join(bin, ProgramName), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := RemoveAfterExit([]string{dir}, nil, false, bin); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for deadline := time.Now().Add(10 * time.Second); len(got) == 0; time.Sleep(10 * time.Millisecond) {
		got, _ = os.ReadFile(called)
		if time.Now().After(deadline) {
			t.Fatal("kiln-helper was not run")
		}
	}
	// A script's $0 is its path, not the argv[0] it was given.
	if want := filepath.Join(bin, ProgramName) + " --rootless=false --bin-dir=" + bin + " -- " + dir; strings.TrimSpace(string(got)) != want {
		t.Errorf("kiln-helper ran as %q, want %q", got, want)
	}

	cmd, err := ReaperConfig{StateDir: "/state", ExecutorPID: 1}.Command(bin, []string{"buildkitd"})
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Path != filepath.Join(bin, ProgramName) || cmd.Args[0] != ReaperName {
		t.Errorf("the reaper runs %s as %s, want %s as %s", cmd.Path, cmd.Args[0], filepath.Join(bin, ProgramName), ReaperName)
	}
}

// cmd/kiln-helper dispatches on the name it runs under and refuses others.
func TestHelperProgramRunsTheRemover(t *testing.T) {
	program := filepath.Join(t.TempDir(), ProgramName)
	build := exec.Command("go", "build", "-o", program, "github.com/kilnbuild/kiln/cmd/kiln-helper")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building kiln-helper: %v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	remover := &exec.Cmd{Path: program, Args: []string{removerName, "--rootless=false", "--", dir}}
	if out, err := remover.CombinedOutput(); err != nil {
		t.Fatalf("kiln-helper as %s: %v\n%s", removerName, err, out)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("%s is still there (lstat: %v)", dir, err)
	}
	out, err := (&exec.Cmd{Path: program, Args: []string{"kiln-other"}}).CombinedOutput()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 2 || !strings.Contains(string(out), "kiln-other") {
		t.Errorf("kiln-helper as kiln-other: %v, %q; want exit 2 naming it", err, out)
	}
}
