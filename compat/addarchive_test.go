package compat

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckLocalArchives(t *testing.T) {
	dir := t.TempDir()
	gz := func(data []byte) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(data)
		zw.Close()
		return b.Bytes()
	}
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: 1})
	tw.Write([]byte("x"))
	tw.Close()
	files := map[string][]byte{
		"ok.tar.gz": gz(tarball.Bytes()),
		"text.gz":   gz([]byte("just text, no archive\n")),
		"a.tar.xz":  {0xfd, '7', 'z', 'X', 'Z', 0x00, 1, 2},
		"a.tar.zst": {0x28, 0xb5, 0x2f, 0xfd, 1, 2},
		"plain.txt": []byte("plain\n"),
		"plain.tar": tarball.Bytes(),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ add, want string }{
		{"ADD ok.tar.gz plain.txt plain.tar missing.gz /d/", ""},
		{"ADD text.gz /d/", "ADD text.gz: unpacking local tar: unexpected EOF"},
		{"ADD *.xz /d/", "ADD a.tar.xz: unpacking local tar: path does not lead to local tar archive"},
		{"ADD a.tar.zst /d/", "path does not lead to local tar archive"},
		{"ADD ${VAR}.gz http://example.com/x.gz /d/", ""},
	} {
		df, err := ParseDockerfileBytes("Dockerfile", []byte("FROM busybox\n"+tc.add+"\n"), nil)
		if err != nil {
			t.Fatal(err)
		}
		err = CheckLocalArchives(df.Stages, dir)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.add, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.add, err, tc.want)
		}
	}
}
