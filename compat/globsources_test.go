package compat

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWithLiteralGlobSourcesCopiesTheNamedFileToo(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"file1.txt", "file[1].txt", "route[id].txt", "app/[slug]/page.tsx", "a*b"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in := "FROM busybox\n" +
		"COPY file\\[1\\].txt /escaped/\n" + // matches file1.txt: both
		"COPY [\"route[id].txt\", \"/json/\"]\n" + // matches nothing: the file alone
		"COPY app/[slug]/page.tsx /page.tsx\n" +
		"COPY a*b missing[0].txt /x/\n" + // matches itself; no such file
		"COPY --from=stage route[id].txt /y/\n"
	got, changed, err := WithLiteralGlobSources([]byte(in), dir)
	if err != nil || !changed {
		t.Fatalf("changed %v, error %v", changed, err)
	}
	want := "FROM busybox\n" +
		"COPY file\\[1\\].txt file[[]1].txt /escaped/\n" +
		"COPY [\"route[[]id].txt\", \"/json/\"]\n" +
		"COPY app/[[]slug]/page.tsx /page.tsx\n" +
		"COPY a*b missing[0].txt /x/\n" +
		"COPY --from=stage route[id].txt /y/\n"
	if string(got) != want {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", got, want)
	}
	if _, changed, _ := WithLiteralGlobSources([]byte("FROM busybox\nCOPY *.txt /\n"), dir); changed {
		t.Error("a glob with no file of its own name was rewritten")
	}
}

func TestWithLiteralGlobSourcesAddsToJSONLists(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"file1.txt", "file[1].txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := WithLiteralGlobSources([]byte("FROM busybox\nCOPY [\"file[1].txt\", \"/d/\"]\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := "FROM busybox\nCOPY [\"file[1].txt\", \"file[[]1].txt\", \"/d/\"]\n"; string(got) != want {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", got, want)
	}
}
