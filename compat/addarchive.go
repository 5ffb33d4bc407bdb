package compat

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Compression magic numbers Kaniko v1.23.2 recognises in a local ADD
// source (it takes any such file for a tarball).
var (
	gzipMagic  = []byte{0x1f, 0x8b, 0x08}
	bzip2Magic = []byte{'B', 'Z', 'h'}
	xzMagic    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	zstdMagic  = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// CheckLocalArchives fails the build where Kaniko's ADD fails on a local
// file it takes for a tarball: one with xz or zstd magic (Kaniko detects
// them but unpacks only gzip and bzip2) and a gzip or bzip2 file that does
// not hold a tar archive. BuildKit unpacks the former and copies the
// latter as they are. Sources are the ADDs of stages (KanikoStages),
// resolved in the build context directory; wildcards are expanded, sources
// that do not exist are left to the build.
func CheckLocalArchives(stages []Stage, contextDir string) error {
	if contextDir == "" {
		return nil
	}
	for _, s := range stages {
		for _, src := range s.addSources {
			matches, err := filepath.Glob(filepath.Join(contextDir, filepath.FromSlash(src.path)))
			if err != nil {
				continue
			}
			for _, m := range matches {
				if err := checkLocalArchive(m); err != nil {
					rel, _ := filepath.Rel(contextDir, m)
					return fmt.Errorf("line %d: ADD %s: unpacking local tar: %v; Kaniko takes a compressed file for a tar archive: ADD a tar (plain, gzip or bzip2) or COPY the file", src.line, filepath.ToSlash(rel), err)
				}
			}
		}
	}
	return nil
}

// checkLocalArchive reports Kaniko's unpacking error for the file at path.
func checkLocalArchive(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		return nil
	}
	r := bufio.NewReader(f)
	head, _ := r.Peek(6)
	var stream io.Reader
	switch {
	case bytes.HasPrefix(head, xzMagic), bytes.HasPrefix(head, zstdMagic):
		return errors.New("path does not lead to local tar archive")
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		stream = zr
	case bytes.HasPrefix(head, bzip2Magic):
		stream = bzip2.NewReader(r)
	default:
		return nil
	}
	if _, err := tar.NewReader(stream).Next(); err != nil && err != io.EOF {
		return err
	}
	return nil
}
