package shape

import (
	"bytes"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

var longName = string(bytes.Repeat([]byte("n"), 120)) // baseImage's long name

func TestCopyOfNothingWritesTheWholeFilesystem(t *testing.T) {
	matches := func(pattern string) (bool, error) { return pattern == "app.txt", nil }
	cases := []struct {
		name       string
		dockerfile string
		empty      bool // BuildKit's history marks the COPY empty (else an empty layer)
		build      func(img *testImage)
		want       [][]string // entry names of each layer after the base
	}{{
		name:       "first instruction, no layer from BuildKit",
		dockerfile: "FROM busybox\nCOPY *.nothing /dest/\n",
		empty:      true,
		want:       [][]string{{"/", "bin/", "bin/ping", "etc/", "etc/passwd", "tmp/", "usr/", "usr/share/", "usr/share/" + longName}},
	}, {
		name:       "after a COPY of the stage: what it snapshotted is left out",
		dockerfile: "FROM busybox\nCOPY app.txt /etc/app.txt\nCOPY *.nothing /dest/\n",
		build: func(img *testImage) {
			img.add("COPY app.txt /etc/app.txt # buildkit", dir("etc/", 0o755), file("etc/app.txt", "a", 0o644))
		},
		want: [][]string{{"/", "etc/", "etc/app.txt"}, {"/", "bin/", "bin/ping", "etc/", "etc/passwd", "tmp/", "usr/", "usr/share/", "usr/share/" + longName}},
	}, {
		name:       "after a RUN Kaniko has recorded the filesystem: no layer",
		dockerfile: "FROM busybox\nRUN touch /x\nCOPY *.nothing /dest/\n",
		build: func(img *testImage) {
			img.add("RUN /bin/sh -c touch /x # buildkit", file("x", "", 0o644))
		},
		want: [][]string{{"/", "x"}},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := &testImage{t: t, img: baseImage(t)}
			if tc.build != nil {
				tc.build(img)
			}
			if tc.empty {
				img.img = buildkitAdd(t, img.img, "COPY *.nothing /dest/ # buildkit", nil)
			} else {
				img.add("COPY *.nothing /dest/ # buildkit")
			}
			got, err := Kaniko(img.img, Options{WorkDir: t.TempDir(), Reproducible: true, Dockerfile: []byte(tc.dockerfile), ContextMatches: matches})
			if err != nil {
				t.Fatal(err)
			}
			layers, _ := got.Layers()
			var names_ [][]string
			for _, l := range layers[1:] {
				names_ = append(names_, names(readEntries(t, l)))
			}
			if !slices.EqualFunc(names_, tc.want, slices.Equal) {
				t.Errorf("layers after the base:\n got %q\nwant %q", names_, tc.want)
			}
			cf, _ := got.ConfigFile()
			last := cf.History[len(cf.History)-1].CreatedBy
			if walked := len(tc.want) == 0 || tc.want[len(tc.want)-1][1] == "bin/"; walked != (last == "COPY *.nothing /dest/") {
				t.Errorf("last history entry %q; the COPY has a layer: %v", last, walked)
			}
		})
	}
}

// testImage appends BuildKit layers to an image.
type testImage struct {
	t   *testing.T
	img v1.Image
}

func (i *testImage) add(createdBy string, entries ...tarEntry) {
	i.img = buildkitAdd(i.t, i.img, createdBy, layerOf(i.t, entries...))
}
