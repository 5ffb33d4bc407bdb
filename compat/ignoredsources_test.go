package compat

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWithIgnoredSources(t *testing.T) {
	in := "FROM busybox\nCOPY secret.txt keep.txt /d/\nCOPY [\"docs/\", \"/docs\"]\nADD *.md http://x/secret.txt /m/\nCOPY --from=busybox secret.txt /s\nCOPY naïve /n\n"
	got, changed, err := WithIgnoredSources([]byte(in), []byte("# comment\nsecret.txt\ndocs\nnaïve\n"))
	if err != nil || !changed {
		t.Fatalf("changed %v, error %v", changed, err)
	}
	want := "FROM busybox\nCOPY secret.tx[t] keep.txt /d/\nCOPY [\"doc[s]/\", \"/docs\"]\nADD *.md http://x/secret.txt /m/\nCOPY --from=busybox secret.txt /s\nCOPY naïv[e] /n\n"
	if string(got) != want {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", got, want)
	}
	if _, changed, _ := WithIgnoredSources([]byte(in), []byte("other\n")); changed {
		t.Error("rewritten although nothing it copies is excluded")
	}
}

func TestContextMatcher(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"app.txt", "secret.txt", "route[id].txt", "docs/a.md", "keep/x.log", "vendor/a.txt", "vendor/keep/b.txt"} {
		p := filepath.Join(dir, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	matches, err := ContextMatcher(dir, []byte("secret.txt\ndocs\n*.log\n!keep/x.log\nvendor\n!vendor/keep/b.txt\n"))
	if err != nil {
		t.Fatal(err)
	}
	for pattern, want := range map[string]bool{
		"app.txt": true, "secret.txt": false, "missing": false, "docs/a.md": false,
		"*.txt": true, "secret.tx[t]": false, "*.nothing": false, "*.md": false, // Kaniko matches whole relative paths
		"docs/*": false, "keep/*.log": true, "": true,
		"route[id].txt": true, // the pattern's own name, as Kaniko compares it
		// An excluded directory still holds what a negation brings back.
		"vendor": true, "vendor/": true, "vendor/a.txt": false, "docs": false,
	} {
		got, err := matches(pattern)
		if err != nil || got != want {
			t.Errorf("%q: matches %v (error %v), want %v", pattern, got, err, want)
		}
	}
}
