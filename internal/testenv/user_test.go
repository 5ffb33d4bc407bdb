package testenv

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestNonRootUserRunsCommands(t *testing.T) {
	u := NonRootUser(t)
	if u.UID == 0 || u.GID == 0 {
		t.Fatalf("non-root user has uid %d gid %d", u.UID, u.GID)
	}
	out, err := u.Command(context.Background(), "sh", "-c", `id -u; id -G; echo "$HOME $XDG_RUNTIME_DIR $USER"; touch "$XDG_RUNTIME_DIR/ok"`).CombinedOutput()
	if err != nil {
		t.Fatalf("running as %s: %v: %s", u.Name, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{strconv.Itoa(u.UID), strconv.Itoa(u.GID), u.Home + " " + u.RuntimeDir + " " + u.Name}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	info, err := os.Stat(u.RuntimeDir)
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("runtime dir %s: mode %v, %v", u.RuntimeDir, info.Mode(), err)
	}

	for _, file := range []string{"/etc/subuid", "/etc/subgid"} {
		ranges, err := SubIDs(file, u)
		if err != nil {
			t.Fatal(err)
		}
		if len(ranges) == 0 || ranges[0].Count < subIDCount {
			t.Fatalf("%s grants %s %v, want at least %d IDs", file, u.Name, ranges, subIDCount)
		}
	}
}

func TestSharedTempDirIsUsableByTheUser(t *testing.T) {
	u := NonRootUser(t)
	dir := SharedTempDir(t, u)
	if out, err := u.Command(context.Background(), "touch", filepath.Join(dir, "written")).CombinedOutput(); err != nil {
		t.Fatalf("user cannot write to SharedTempDir: %v: %s", err, out)
	}
	// A root-only t.TempDir() is exactly what SharedTempDir avoids.
	if out, err := u.Command(context.Background(), "ls", t.TempDir()).CombinedOutput(); err == nil {
		t.Fatalf("expected t.TempDir() to be closed to the user, ls printed %s", out)
	}
	if out, err := u.Command(context.Background(), "cat", filepath.Join(DockerConfig(t, map[string]string{"h:1": "a:b"}), "config.json")).CombinedOutput(); err != nil {
		t.Fatalf("user cannot read DockerConfig output: %v: %s", err, out)
	}
}

func TestBinariesNamesMissingOnes(t *testing.T) {
	dir := t.TempDir()
	if _, err := binariesIn(dir); err == nil || !strings.Contains(err.Error(), "run make build") ||
		!strings.Contains(err.Error(), "executor, kiln-runc, buildkitd, rootlesskit") {
		t.Fatalf("empty bin dir: error %v", err)
	}
	for _, name := range []string{"executor", "kiln-runc", "buildkitd", "rootlesskit"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(dir, "buildkitd"), 0o644)
	if _, err := binariesIn(dir); err == nil || !strings.Contains(err.Error(), "buildkitd missing") {
		t.Fatalf("non-executable buildkitd: error %v", err)
	}
	os.Chmod(filepath.Join(dir, "buildkitd"), 0o755)
	bins, err := binariesIn(dir)
	if err != nil || bins.Buildkitd != filepath.Join(dir, "buildkitd") {
		t.Fatalf("complete bin dir: %+v %v", bins, err)
	}
}

func TestNonRootUserCanCreateUserNamespaces(t *testing.T) {
	RequireUserNamespaces(t)
	u := NonRootUser(t)
	out, err := u.Command(context.Background(), "unshare", "--user", "--map-root-user", "id", "-u").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Fatalf("unshare as %s: %v: %s", u.Name, err, out)
	}
}
