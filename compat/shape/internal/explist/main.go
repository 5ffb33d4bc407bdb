package main

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

func main() {
	idx, err := layout.ImageIndexFromPath(os.Args[1])
	if err != nil {
		panic(err)
	}
	im, _ := idx.IndexManifest()
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		panic(err)
	}
	m, _ := img.RawManifest()
	fmt.Println(string(m))
	c, _ := img.RawConfigFile()
	var v any
	json.Unmarshal(c, &v)
	b, _ := json.MarshalIndent(v, "", " ")
	fmt.Println(string(b))
	ls, _ := img.Layers()
	for i, l := range ls {
		if i == 0 && len(os.Args) < 3 {
			continue
		}
		fmt.Println("=== layer", i)
		rc, _ := l.Uncompressed()
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				panic(err)
			}
			fmt.Printf("%c %q mode=%o %d:%d %q/%q size=%d link=%q fmt=%v mt=%v pax=%v xattr=%v\n", h.Typeflag, h.Name, h.Mode, h.Uid, h.Gid, h.Uname, h.Gname, h.Size, h.Linkname, h.Format, h.ModTime.Unix(), h.PAXRecords, h.Xattrs)
		}
	}
}
