package buildcontext

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tarEntry describes one archive member for makeTar.
type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

var testMtime = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

func makeTar(t testing.TB, compress bool, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var gz *gzip.Writer
	var tw *tar.Writer
	if compress {
		gz = gzip.NewWriter(&buf)
		tw = tar.NewWriter(gz)
	} else {
		tw = tar.NewWriter(&buf)
	}
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, ModTime: testMtime, Size: int64(len(e.body))}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		if hdr.Typeflag != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// sampleContext is an ordinary context: nested dirs, modes, links.
func sampleContext(t testing.TB, compress bool) []byte {
	return makeTar(t, compress,
		tarEntry{name: "./", typ: tar.TypeDir, mode: 0o755},
		tarEntry{name: "Dockerfile", body: "FROM scratch\nCOPY . /\n"},
		tarEntry{name: "bin/", typ: tar.TypeDir, mode: 0o750},
		tarEntry{name: "bin/run.sh", body: "#!/bin/sh\necho hi\n", mode: 0o755},
		tarEntry{name: "bin/run-link", typ: tar.TypeSymlink, link: "run.sh"},
		tarEntry{name: "bin/run-hard", typ: tar.TypeLink, link: "bin/run.sh"},
		tarEntry{name: "abs-link", typ: tar.TypeSymlink, link: "/etc/hostname"},
		tarEntry{name: "deep/er/file.txt", body: "deep"},
		tarEntry{name: "ro/", typ: tar.TypeDir, mode: 0o555},
		tarEntry{name: "ro/inside", body: "x", mode: 0o444},
	)
}

// checkSampleContext asserts what sampleContext must unpack to.
func checkSampleContext(t *testing.T, dir string) {
	t.Helper()
	readFile(t, filepath.Join(dir, "Dockerfile"), "FROM scratch\nCOPY . /\n")
	readFile(t, filepath.Join(dir, "deep/er/file.txt"), "deep")
	checkMode(t, filepath.Join(dir, "bin"), 0o750|os.ModeDir)
	checkMode(t, filepath.Join(dir, "bin/run.sh"), 0o755)
	checkMode(t, filepath.Join(dir, "ro"), 0o555|os.ModeDir)
	checkMode(t, filepath.Join(dir, "ro/inside"), 0o444)
	if target, err := os.Readlink(filepath.Join(dir, "bin/run-link")); err != nil || target != "run.sh" {
		t.Errorf("bin/run-link = %q, %v; want a symlink to run.sh", target, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "abs-link")); err != nil || target != "/etc/hostname" {
		t.Errorf("abs-link = %q, %v; want a symlink to /etc/hostname kept as is", target, err)
	}
	orig, err1 := os.Stat(filepath.Join(dir, "bin/run.sh"))
	hard, err2 := os.Stat(filepath.Join(dir, "bin/run-hard"))
	if err1 != nil || err2 != nil || !os.SameFile(orig, hard) {
		t.Errorf("bin/run-hard is not a hard link of bin/run.sh (%v, %v)", err1, err2)
	}
	for _, name := range []string{"Dockerfile", "bin", "ro", "ro/inside"} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil || !fi.ModTime().Equal(testMtime) {
			t.Errorf("%s mtime = %v (%v), want %v", name, fi.ModTime(), err, testMtime)
		}
	}
}

func readFile(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("reading %s: %v", path, err)
		return
	}
	if string(got) != want {
		t.Errorf("%s = %q, want %q", path, got, want)
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	if fi.Mode() != want {
		t.Errorf("%s mode = %v, want %v", path, fi.Mode(), want)
	}
}

func TestExtractKeepsModesLinksAndTimes(t *testing.T) {
	for _, compress := range []bool{true, false} {
		dir := t.TempDir()
		if err := extractTar(bytes.NewReader(sampleContext(t, compress)), dir); err != nil {
			t.Fatalf("gzip=%v: %v", compress, err)
		}
		checkSampleContext(t, dir)
		makeWritable(t, dir)
	}
}

// makeWritable lets t.TempDir's cleanup remove read-only directories.
func makeWritable(t *testing.T, dir string) {
	t.Cleanup(func() {
		filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
			if err == nil && fi.IsDir() {
				os.Chmod(path, 0o755)
			}
			return nil
		})
	})
}

func TestExtractLaterEntryReplacesEarlierOne(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(outside, []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}
	archive := makeTar(t, true,
		tarEntry{name: "f", typ: tar.TypeSymlink, link: outside},
		tarEntry{name: "f", body: "replaced"},
	)
	if err := extractTar(bytes.NewReader(archive), dir); err != nil {
		t.Fatal(err)
	}
	readFile(t, filepath.Join(dir, "f"), "replaced")
	readFile(t, outside, "untouched")
	checkMode(t, filepath.Join(dir, "f"), 0o644)
}

func TestExtractRefusesEscapes(t *testing.T) {
	cases := map[string]struct {
		entries []tarEntry
		entry   string
	}{
		"dot-dot":  {[]tarEntry{{name: "ok"}, {name: "a/../../escaped", body: "x"}}, "a/../../escaped"},
		"absolute": {[]tarEntry{{name: "/tmp/escaped", body: "x"}}, "/tmp/escaped"},
		"symlink then file through it": {[]tarEntry{
			{name: "out", typ: tar.TypeSymlink, link: "$OUT"},
			{name: "out/escaped", body: "x"},
		}, "out/escaped"},
		"relative symlink chain": {[]tarEntry{
			{name: "a/up", typ: tar.TypeSymlink, link: "../.."},
			{name: "b", typ: tar.TypeSymlink, link: "a/up"},
			{name: "b/escaped", body: "x"},
		}, "b/escaped"},
		"symlink then directory through it": {[]tarEntry{
			{name: "out", typ: tar.TypeSymlink, link: "$OUT"},
			{name: "out/sub/", typ: tar.TypeDir, mode: 0o755},
		}, "out/sub/"},
		"hard link climbing out":     {[]tarEntry{{name: "h", typ: tar.TypeLink, link: "../OUTSIDE/victim"}}, "h"},
		"hard link to absolute path": {[]tarEntry{{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}}, "h"},
		"hard link through escaping symlink": {[]tarEntry{
			{name: "out", typ: tar.TypeSymlink, link: "$OUT"},
			{name: "h", typ: tar.TypeLink, link: "out/victim"},
		}, "h"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "ctx")
			outside := filepath.Join(parent, "OUTSIDE")
			for _, d := range []string{dir, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("v"), 0o644); err != nil {
				t.Fatal(err)
			}
			entries := make([]tarEntry, len(tc.entries))
			for i, e := range tc.entries {
				e.link = strings.ReplaceAll(e.link, "$OUT", outside)
				entries[i] = e
			}
			err := extractTar(bytes.NewReader(makeTar(t, true, entries...)), dir)
			var unsafe *UnsafeEntryError
			if !errors.As(err, &unsafe) {
				t.Fatalf("extract = %v, want an UnsafeEntryError", err)
			}
			if unsafe.Entry != tc.entry || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line naming entry %q", err, tc.entry)
			}
			for _, leaked := range []string{filepath.Join(parent, "escaped"), filepath.Join(outside, "escaped"), filepath.Join(outside, "sub"), "/tmp/escaped"} {
				if _, err := os.Lstat(leaked); err == nil {
					t.Errorf("%s was written outside the context", leaked)
				}
			}
			readFile(t, filepath.Join(outside, "victim"), "v")
		})
	}
}

func TestExtractRejectsGarbage(t *testing.T) {
	if err := extractTar(strings.NewReader(""), t.TempDir()); !errors.Is(err, errEmptyArchive) {
		t.Errorf("empty input: %v, want errEmptyArchive", err)
	}
	if err := extractTar(strings.NewReader("<html>not a tarball</html>"), t.TempDir()); err == nil {
		t.Error("HTML accepted as a tar")
	}
	truncated := sampleContext(t, true)
	if err := extractTar(bytes.NewReader(truncated[:len(truncated)/2]), t.TempDir()); err == nil {
		t.Error("truncated gzip accepted")
	}
}

// headerOnly is an archive whose one entry declares size bytes and
// carries body: a tar bomb's shape, or a truncated download.
func headerOnly(t *testing.T, name string, size int64, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: testMtime}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	tw.Flush() // fails: the data is short, as intended
	return buf.Bytes()
}

func TestExtractRefusesWhatCannotFit(t *testing.T) {
	cases := map[string]struct {
		archive []byte
		want    string
	}{
		"declares a petabyte": {headerOnly(t, "bomb.bin", 1<<50, ""), `tar entry "bomb.bin" declares 1125899906842624 bytes, more than the`},
		"path longer than PATH_MAX": {makeTar(t, true, tarEntry{name: strings.Repeat("deep/", 820) + "f", body: "x"}),
			"bytes long: unpacked, its path would exceed the 4096 bytes a path may have"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			err := extractTar(bytes.NewReader(tc.archive), dir)
			var limit *LimitError
			if !errors.As(err, &limit) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("extract = %v, want a LimitError containing %q", err, tc.want)
			}
			if len(err.Error()) > 400 || strings.Contains(err.Error(), "\n") {
				t.Errorf("error is %d bytes or several lines: %q", len(err.Error()), err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("something was written before the refusal: %v", entries)
			}
		})
	}
}

func TestExtractNamesATruncatedEntry(t *testing.T) {
	err := extractTar(bytes.NewReader(headerOnly(t, "half.bin", 4096, "only a few bytes")), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `the archive ends inside tar entry "half.bin": it is truncated or corrupt`) {
		t.Fatalf("extract = %v", err)
	}
}

func TestExtractStopsWhenTheFilesystemIsFull(t *testing.T) {
	archive := makeTar(t, true, tarEntry{name: "a", body: "12345"}, tarEntry{name: "b", body: "678"}, tarEntry{name: "c", body: ""})
	err := extractWithin(bytes.NewReader(archive), t.TempDir(), room{bytes: 7, files: -1})
	if err == nil || !strings.Contains(err.Error(), `tar entry "b" declares 3 bytes, more than the 2 bytes left`) {
		t.Errorf("7 bytes free: %v", err)
	}
	err = extractWithin(bytes.NewReader(archive), t.TempDir(), room{bytes: -1, files: 2})
	if err == nil || !strings.Contains(err.Error(), `tar entry "c" is one file more than the filesystem`) {
		t.Errorf("2 inodes free: %v", err)
	}
	if err := extractWithin(bytes.NewReader(archive), t.TempDir(), room{bytes: 8, files: 3}); err != nil {
		t.Errorf("exactly enough room: %v", err)
	}
}

// testdata/sparse-bomb.tar.gz is 360 bytes made by GNU tar --sparse from a
// Dockerfile and an empty 1 TiB file: unpacked without the limit it wrote
// gigabytes of zeros within seconds.
func TestExtractRefusesASparseBomb(t *testing.T) {
	f, err := os.Open("testdata/sparse-bomb.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	err = extractWithin(f, dir, room{bytes: 1 << 30, files: -1}) // 1 GiB free
	var limit *LimitError
	if !errors.As(err, &limit) || limit.Entry != "bomb.bin" || !strings.Contains(err.Error(), "declares 1099511627776 bytes") {
		t.Fatalf("extract = %v, want a LimitError for bomb.bin", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "bomb.bin")); err == nil {
		t.Errorf("bomb.bin was written (%d bytes)", fi.Size())
	}
}

func TestExtractSaysWhenItIsNoArchive(t *testing.T) {
	err := extractTar(strings.NewReader("<html>404 not found</html>\n"), t.TempDir())
	if err == nil || !strings.HasPrefix(err.Error(), "the data is not a tar archive or a gzip of one") {
		t.Errorf("HTML: %v", err)
	}
}
