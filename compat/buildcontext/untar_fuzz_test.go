package buildcontext

import (
	"archive/tar"
	"bytes"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtractTar: any byte stream as a context archive. Whatever it holds,
// nothing is written beside the context directory, a failure is one line
// naming what is wrong, and nothing panics.
func FuzzExtractTar(f *testing.F) {
	t := f
	f.Add(sampleContext(t, true))
	f.Add(sampleContext(t, false))
	f.Add(makeTar(t, false,
		tarEntry{name: "out", typ: tar.TypeSymlink, link: "../outside"},
		tarEntry{name: "out/escaped", body: "x"}))
	f.Add(makeTar(t, false,
		tarEntry{name: "a", typ: tar.TypeSymlink, link: "b"},
		tarEntry{name: "b", typ: tar.TypeSymlink, link: "a"},
		tarEntry{name: "a/x", body: "loop"}))
	f.Add(makeTar(t, false, tarEntry{name: "h", typ: tar.TypeLink, link: "../outside"}))
	f.Add(makeTar(t, true, tarEntry{name: "d/", typ: tar.TypeDir, mode: 0o755}, tarEntry{name: "d", body: "file over dir"}))
	f.Add(makeTar(t, false, tarEntry{name: strings.Repeat("deep/", 900) + "f", body: "x"}))
	f.Add([]byte{0x1f, 0x8b, 0x08, 0x00})
	f.Fuzz(func(t *testing.T, archive []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "ctx")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		sentinel := filepath.Join(parent, "outside")
		if err := os.WriteFile(sentinel, []byte("untouched"), 0o644); err != nil {
			t.Fatal(err)
		}
		makeWritable(t, dir)
		// The disk as the fuzzer's inputs may fill it: a few bytes of
		// header can declare gigabytes.
		err := extractWithin(bytes.NewReader(archive), dir, room{bytes: 1 << 20, files: 1000})
		if err != nil && (err.Error() == "" || strings.ContainsAny(err.Error(), "\n\r")) {
			t.Errorf("error %q: want one non-empty line", err)
		}
		entries, rerr := os.ReadDir(parent)
		if rerr != nil {
			t.Fatal(rerr)
		}
		for _, e := range entries {
			if e.Name() != "ctx" && e.Name() != "outside" {
				t.Errorf("%s written beside the context (extract: %v)", e.Name(), err)
			}
		}
		if got, rerr := os.ReadFile(sentinel); rerr != nil || string(got) != "untouched" {
			t.Errorf("the file beside the context changed: %q, %v", got, rerr)
		}
	})
}

// FuzzTarRoundTrip: an archive of ordinary files unpacks to exactly those
// files, contents and permission bits, whatever their names (within what a
// context may hold: relative, no "..", no file that is another's parent).
func FuzzTarRoundTrip(f *testing.F) {
	f.Add("Dockerfile\nsrc/main.go\nsrc/lib/a b.txt\n.hidden", []byte("FROM scratch\n"), uint16(0o644))
	f.Add("a/./b\nc//d\ne/", []byte{0, 1, 2, 0xff}, uint16(0o4755))
	f.Add("ünï/cødé\n\x7f\nx\ty", []byte(""), uint16(0o600))
	f.Fuzz(func(t *testing.T, names string, body []byte, mode uint16) {
		want := map[string][]byte{}
		perm := int64(mode & 0o777)
		perm |= 0o600 // the test must read them back
		var entries []tarEntry
		for i, name := range strings.Split(names, "\n") {
			clean := path.Clean(name)
			if name == "" || strings.HasPrefix(clean, "/") || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") ||
				strings.ContainsRune(name, 0) || strings.HasSuffix(name, "/") || len(clean) > 255 {
				continue
			}
			if clashes(want, clean) {
				continue
			}
			content := append(append([]byte(nil), body...), byte(i))
			want[clean] = content
			entries = append(entries, tarEntry{name: name, body: string(content), mode: perm})
		}
		dir := t.TempDir()
		if err := extractTar(bytes.NewReader(makeTar(t, len(body)%2 == 0, entries...)), dir); err != nil {
			t.Fatalf("extract of %d ordinary files: %v", len(entries), err)
		}
		got := map[string][]byte{}
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			info, err := d.Info()
			if err != nil {
				return err
			}
			if !info.Mode().IsRegular() || int64(info.Mode().Perm()) != perm {
				t.Errorf("%s: mode %v, want a regular file with %o", rel, info.Mode(), perm)
			}
			got[filepath.ToSlash(rel)], err = os.ReadFile(p)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Errorf("unpacked %d files, archived %d", len(got), len(want))
		}
		for name, content := range want {
			if !bytes.Equal(got[name], content) {
				t.Errorf("%s = %q, archived %q", name, got[name], content)
			}
		}
	})
}

// clashes reports whether name and one of have would need the same path
// as a file and as a directory, or name repeats one of them.
func clashes(have map[string][]byte, name string) bool {
	for other := range have {
		if other == name || strings.HasPrefix(name, other+"/") || strings.HasPrefix(other, name+"/") {
			return true
		}
	}
	return false
}
