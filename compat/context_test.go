package compat

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnbuild/kiln/flagmap"
)

func TestResolveContextLocal(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "app")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts flagmap.Options
		want string
	}{
		{"plain directory", flagmap.Options{Context: dir}, dir},
		{"plain directory ignores sub path like Kaniko", flagmap.Options{Context: dir, ContextSubPath: "app"}, dir},
		{"dir scheme", flagmap.Options{Context: "dir://" + dir}, dir},
		{"dir scheme with sub path", flagmap.Options{Context: "dir://" + dir, ContextSubPath: "app"}, sub},
		{"default context hides bucket", flagmap.Options{Context: dir, Bucket: "my-bucket"}, dir},
	} {
		bc, err := ResolveContext(context.Background(), &tc.opts, nil)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if bc.Dir != tc.want {
			t.Errorf("%s: Dir = %q, want %q", tc.name, bc.Dir, tc.want)
		}
		bc.Cleanup()
	}
}

func TestResolveContextRelativeIsAbsolute(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("ctx", 0o755); err != nil {
		t.Fatal(err)
	}
	bc, err := ResolveContext(context.Background(), &flagmap.Options{Context: "ctx"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(bc.Dir) || filepath.Base(bc.Dir) != "ctx" {
		t.Fatalf("Dir = %q, want an absolute path ending in ctx", bc.Dir)
	}
}

func TestResolveContextErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		opts  flagmap.Options
		wants []string
	}{
		{"empty", flagmap.Options{}, []string{"--context is empty"}},
		{"missing dir", flagmap.Options{Context: filepath.Join(dir, "nope")}, []string{"--context", "does not exist"}},
		{"file", flagmap.Options{Context: file}, []string{"is not a directory"}},
		{"missing sub path", flagmap.Options{Context: "dir://" + dir, ContextSubPath: "nope"}, []string{"--context-sub-path nope", "does not exist"}},
		{"missing tar", flagmap.Options{Context: "tar://" + filepath.Join(dir, "context.tar.gz")}, []string{"--context tar://", "no such file"}},
		{"tar stdin without input", flagmap.Options{Context: "tar://stdin"}, []string{"--context tar://stdin", "standard input"}},
		{"unreachable git", flagmap.Options{Context: "git://127.0.0.1:1/org/repo.git#refs/heads/main"}, []string{"--context git://127.0.0.1:1/org/repo.git", "git clone failed"}},
		{"unreachable https", flagmap.Options{Context: "https://127.0.0.1:1/ctx.tar.gz"}, []string{"--context https://127.0.0.1:1/ctx.tar.gz", "downloading"}},
		{"bucket overrides a scheme context", flagmap.Options{Context: "dir://" + dir, Bucket: "s3://b/k"}, []string{"--bucket s3://b/k"}},
		{"unknown scheme", flagmap.Options{Context: "http://example.com/ctx.tar.gz"}, []string{UnknownContextPrefixError}},
	} {
		_, err := ResolveContext(context.Background(), &tc.opts, nil)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") {
			t.Errorf("%s: error spans lines: %q", tc.name, msg)
		}
		for _, want := range tc.wants {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: error %q lacks %q", tc.name, msg, want)
			}
		}
	}
}
