package shape

import (
	"archive/tar"
	"io/fs"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func owned(e tarEntry, uid, gid int) tarEntry {
	e.hdr.Uid, e.hdr.Gid = uid, gid
	return e
}

func symlink(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: buildTime}}
}

// shapedEntries shapes img built from dockerfile and returns the entries of
// each layer after the base, by name.
func shapedEntries(t *testing.T, opts testOptions) []map[string]*tar.Header {
	t.Helper()
	got, err := Kaniko(opts.image, opts.Options)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := got.Layers()
	var out []map[string]*tar.Header
	for _, l := range layers[1:] {
		m := map[string]*tar.Header{}
		for _, h := range readEntries(t, l) {
			m[h.Name] = h
		}
		out = append(out, m)
	}
	return out
}

func TestWorkdirParentsStayRootsAcrossLayers(t *testing.T) {
	img := buildkitAdd(t, baseImage(t), "WORKDIR /srv/owned", layerOf(t, owned(dir("srv/", 0o755), 1000, 1000), owned(dir("srv/owned/", 0o755), 1000, 1000)))
	// BuildKit's next layer repeats srv with its (wrong) owner.
	img = buildkitAdd(t, img, "RUN /bin/sh -c touch /srv/x # buildkit", layerOf(t, owned(dir("srv/", 0o755), 1000, 1000), file("srv/x", "", 0o644)))
	layers := shapedEntries(t, testOptions{image: img, Options: Options{WorkDir: t.TempDir(), Reproducible: true,
		Dockerfile: []byte("FROM busybox\nUSER user\nWORKDIR /srv/owned\nUSER root\nRUN touch /srv/x\n")}})
	for i, l := range layers {
		if h := l["srv/"]; h == nil || h.Uid != 0 || h.Gid != 0 {
			t.Fatalf("layer %d: srv/ should be root's like Kaniko's os.MkdirAll parent: %+v", i+1, h)
		}
	}
	if h := layers[0]["srv/owned/"]; h.Uid != 1000 {
		t.Errorf("the WORKDIR itself belongs to USER: uid %d", h.Uid)
	}
}

func TestCopyRulesFromTheBuildContext(t *testing.T) {
	context := map[string]Source{
		"tree":     {Mode: fs.ModeDir | 0o750, Uid: 2000, Gid: 2001},
		"link":     {Mode: fs.ModeSymlink | 0o777, Link: "target.txt"},
		"owned.go": {Mode: 0o644, Uid: 3000, Gid: 3000},
	}
	passwd := file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nweb:x:1001:1002::/home/web:/bin/sh\n", 0o644)
	img := buildkitAdd(t, baseImage(t), "RUN adduser web # buildkit", layerOf(t, passwd))
	img = buildkitAdd(t, img, "COPY tree /deep/tree # buildkit", layerOf(t, owned(dir("deep/", 0o755), 7, 7), dir("deep/tree/", 0o755), owned(file("deep/tree/a", "a", 0o644), 2000, 2001)))
	img = buildkitAdd(t, img, "COPY link /via # buildkit", layerOf(t, file("via", "followed", 0o644)))
	img = buildkitAdd(t, img, "COPY --chown=web owned.go /src/ # buildkit", layerOf(t, owned(dir("src/", 0o755), 1001, 1002), owned(file("src/owned.go", "x", 0o644), 1001, 1002)))
	dockerfile := []byte("FROM busybox\nRUN adduser web\nCOPY tree /deep/tree\nCOPY link /via\nCOPY --chown=web owned.go /src/\n")
	contextSource := func(rel string) (Source, error) {
		if s, ok := context[rel]; ok {
			return s, nil
		}
		return Source{}, fs.ErrNotExist
	}
	all := shapedEntries(t, testOptions{image: img, Options: Options{WorkDir: t.TempDir(), Reproducible: true, Dockerfile: dockerfile, ContextSource: contextSource}})
	layers := all[1:]
	if h := layers[0]["deep/tree/"]; h.Mode != 0o750 || h.Uid != 2000 || h.Gid != 2001 {
		t.Errorf("destination of a directory source: mode %o owner %d:%d, want the source's 0750 2000:2001", h.Mode, h.Uid, h.Gid)
	}
	if h := layers[0]["deep/"]; h.Mode != 0o750&^0o022 || h.Uid != 0 || h.Gid != 0 {
		t.Errorf("created parent: mode %o owner %d:%d, want root's with the source's mode less the umask", h.Mode, h.Uid, h.Gid)
	}
	if h := layers[1]["via"]; h.Typeflag != tar.TypeSymlink || h.Linkname != "target.txt" || h.Size != 0 {
		t.Errorf("a symlink source is copied as the link: type %c link %q size %d", h.Typeflag, h.Linkname, h.Size)
	}
	for _, name := range []string{"src/", "src/owned.go"} {
		if h := layers[2][name]; h.Uid != 1001 || h.Gid != 1001 {
			t.Errorf("%s: --chown=<user> without a group: owner %d:%d, want gid = uid", name, h.Uid, h.Gid)
		}
	}
	// A user the image's /etc/passwd lacks fails, as in Kaniko.
	unknown := buildkitAdd(t, baseImage(t), "COPY --chown=web owned.go /src/ # buildkit", layerOf(t, owned(file("src/owned.go", "x", 0o644), 1001, 1002)))
	_, err := Kaniko(unknown, Options{WorkDir: t.TempDir(), Reproducible: true, Dockerfile: []byte("FROM busybox\nCOPY --chown=web owned.go /src/\n"), ContextSource: contextSource})
	if err == nil || !strings.Contains(err.Error(), "user web is not a uid and does not exist") {
		t.Errorf("COPY --chown=<unknown user>: error %v, want Kaniko's", err)
	}
}

func TestSymlinkTargetsJoinTheLayer(t *testing.T) {
	img := buildkitAdd(t, baseImage(t), "RUN /bin/sh -c ln -s /etc/passwd /opt/pw # buildkit", layerOf(t, dir("opt/", 0o755), symlink("opt/pw", "../etc/passwd"), symlink("opt/gone", "/nowhere"), symlink("opt/tmp", "/tmp")))
	layers := shapedEntries(t, testOptions{image: img, Options: Options{WorkDir: t.TempDir(), Reproducible: true,
		Dockerfile: []byte("FROM busybox\nRUN ln -s /etc/passwd /opt/pw\n")}})
	l := layers[0]
	if h := l["etc/passwd"]; h == nil || h.Size != int64(len("root:x:0:0")) {
		t.Fatalf("the existing target of opt/pw (with its data from the base) is missing: %+v", h)
	}
	if h := l["tmp/"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("the directory target of opt/tmp is missing: %+v", h)
	}
	if _, ok := l["nowhere"]; ok {
		t.Error("a dangling link's target was added")
	}
}

func TestSingleSnapshotMergesAStage(t *testing.T) {
	img := buildkitAdd(t, baseImage(t), "RUN /bin/sh -c echo one > /one # buildkit", layerOf(t, file("one", "1", 0o644)))
	img = buildkitAdd(t, img, "COPY extra.txt /extra.txt # buildkit", layerOf(t, file("extra.txt", "e", 0o644)))
	img = buildkitAdd(t, img, "RUN /bin/sh -c rm /one /etc/passwd && echo two > /two # buildkit", layerOf(t, file(".wh.one", "", 0), dir("etc/", 0o755), file("etc/.wh.passwd", "", 0), file("two", "2", 0o644)))
	dockerfile := []byte("FROM busybox\nRUN echo one > /one\nCOPY extra.txt /extra.txt\nRUN rm /one /etc/passwd && echo two > /two\n")
	got, err := Kaniko(img, Options{WorkDir: t.TempDir(), Reproducible: true, SingleSnapshot: true, Dockerfile: dockerfile})
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := got.Layers()
	if len(layers) != 2 {
		t.Fatalf("%d layers, want the base and one for the stage", len(layers))
	}
	want := []string{"/", "etc/", "etc/.wh.passwd", "extra.txt", "two"}
	if g := names(readEntries(t, layers[1])); !equal(g, want) {
		t.Fatalf("entries %q, want %q (no whiteout for a file the stage created)", g, want)
	}
	cf, _ := got.ConfigFile()
	if last := cf.History[len(cf.History)-1].CreatedBy; last != "RUN rm /one /etc/passwd && echo two > /two" {
		t.Errorf("created_by %q, want the stage's last instruction", last)
	}
}

type testOptions struct {
	image v1.Image
	Options
}

func TestRepeatedCopyKeepsItsLayer(t *testing.T) {
	img := buildkitAdd(t, baseImage(t), "COPY same.txt /one.txt # buildkit", layerOf(t, file("one.txt", "same", 0o644)))
	// BuildKit's diff of the identical second COPY is empty.
	img = buildkitAdd(t, img, "COPY same.txt /one.txt # buildkit", layerOf(t))
	layers := shapedEntries(t, testOptions{image: img, Options: Options{WorkDir: t.TempDir(), Reproducible: true,
		Dockerfile: []byte("FROM busybox\nCOPY same.txt /one.txt\nCOPY same.txt /one.txt\n"),
		ContextSource: func(rel string) (Source, error) {
			if rel == "same.txt" {
				return Source{Mode: 0o644}, nil
			}
			return Source{}, fs.ErrNotExist
		}}})
	if len(layers) != 2 {
		t.Fatalf("%d layers, want one per COPY like Kaniko", len(layers))
	}
	if h := layers[1]["one.txt"]; h == nil || h.Size != int64(len("same")) {
		t.Fatalf("the repeated COPY's layer lacks the copied file: %v", layers[1])
	}
}

func TestVolumeDirectoriesJoinTheNextSnapshot(t *testing.T) {
	// BuildKit's build of the Dockerfile compat.WithVolumeDirs rewrote.
	img := buildkitAdd(t, baseImage(t), "VOLUME [/data] # buildkit", nil)
	img = buildkitAdd(t, img, "COPY / /data/ # buildkit", layerOf(t, dir("data/", 0o755)))
	img = buildkitAdd(t, img, "RUN /bin/sh -c echo x > /data/in && echo y > /out # buildkit", layerOf(t, dir("data/", 0o755), file("data/in", "x", 0o644), file("out", "y", 0o644)))
	img = buildkitAdd(t, img, "VOLUME [/logs] # buildkit", nil)
	img = buildkitAdd(t, img, "COPY / /logs/ # buildkit", layerOf(t, dir("logs/", 0o755)))
	img = buildkitAdd(t, img, "COPY note.txt /note.txt # buildkit", layerOf(t, file("note.txt", "n", 0o644)))
	img = buildkitAdd(t, img, "VOLUME [/late] # buildkit", nil)
	img = buildkitAdd(t, img, "COPY / /late/ # buildkit", layerOf(t, dir("late/", 0o755)))
	dockerfile := []byte("FROM busybox\nVOLUME /data\nRUN echo x > /data/in && echo y > /out\nVOLUME /logs\nCOPY note.txt /note.txt\nVOLUME /late\n")
	got, err := Kaniko(img, Options{WorkDir: t.TempDir(), Reproducible: true, Dockerfile: dockerfile, VolumeDirs: true})
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := got.Layers()
	if len(layers) != 3 {
		t.Fatalf("%d layers, want the base, the RUN and the COPY", len(layers))
	}
	if g, want := names(readEntries(t, layers[1])), []string{"/", "data/", "out"}; !equal(g, want) {
		t.Errorf("RUN layer %q, want %q: the new volume directory without its content", g, want)
	}
	if g, want := names(readEntries(t, layers[2])), []string{"/", "data/", "logs/", "note.txt"}; !equal(g, want) {
		t.Errorf("COPY layer %q, want %q: every volume of the stage so far", g, want)
	}
	cf, _ := got.ConfigFile()
	for _, h := range cf.History {
		if strings.HasPrefix(h.CreatedBy, "COPY / ") {
			t.Errorf("history keeps the inserted COPY: %q", h.CreatedBy)
		}
	}
}

func TestCopyKeepsSetidBitsOfTheSource(t *testing.T) {
	context := map[string]Source{
		"modes":       {Mode: fs.ModeDir | 0o755},
		"modes/suid":  {Mode: fs.ModeSetuid | 0o755},
		"modes/sgid":  {Mode: fs.ModeSetgid | 0o750},
		"modes/plain": {Mode: 0o644},
	}
	// Rootless BuildKit's layer: the setuid and setgid bits are gone.
	img := buildkitAdd(t, baseImage(t), "COPY modes /modes # buildkit", layerOf(t, dir("modes/", 0o755), file("modes/suid", "s", 0o755), file("modes/sgid", "g", 0o750), file("modes/plain", "p", 0o644)))
	img = buildkitAdd(t, img, "COPY --chmod=755 modes/suid /chmodded # buildkit", layerOf(t, file("chmodded", "s", 0o755)))
	layers := shapedEntries(t, testOptions{image: img, Options: Options{WorkDir: t.TempDir(), Reproducible: true,
		Dockerfile: []byte("FROM busybox\nCOPY modes /modes\nCOPY --chmod=755 modes/suid /chmodded\n"),
		ContextSource: func(rel string) (Source, error) {
			if s, ok := context[rel]; ok {
				return s, nil
			}
			return Source{}, fs.ErrNotExist
		}}})
	for name, want := range map[string]int64{"modes/suid": 0o4755, "modes/sgid": 0o2750, "modes/plain": 0o644} {
		if h := layers[0][name]; h == nil || h.Mode != want {
			t.Errorf("%s: %+v, want mode %o", name, h, want)
		}
	}
	if h := layers[1]["chmodded"]; h.Mode != 0o755 {
		t.Errorf("--chmod decides the mode: %o", h.Mode)
	}
}

func TestRunChangingAHardlinkedFileCarriesItsOtherNames(t *testing.T) {
	hardlink := func(name, target string) tarEntry {
		return tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o4750, ModTime: buildTime}}
	}
	base := buildkitAdd(t, baseImage(t), "RUN /bin/sh -c make-links # buildkit", layerOf(t,
		dir("s/", 0o755), file("s/a", "old", 0o4750), hardlink("s/b", "s/a"), hardlink("s/c", "/s/a"), file("s/single", "x", 0o644)))
	changed := buildkitAdd(t, base, "RUN /bin/sh -c change # buildkit", layerOf(t,
		dir("s/", 0o755), file("s/c", "new data", 0o4750), file("s/single", "y", 0o644)))
	dockerfile := []byte("FROM busybox\nRUN make-links\nRUN change\n")
	layers := shapedEntries(t, testOptions{image: changed, Options: Options{WorkDir: t.TempDir(), Reproducible: true, Dockerfile: dockerfile}})
	l := layers[1]
	if h := l["s/a"]; h == nil || h.Typeflag != tar.TypeReg || h.Size != int64(len("new data")) || h.Mode != 0o4750 {
		t.Fatalf("s/a (first name in Kaniko's order) should carry the changed data: %+v", h)
	}
	for _, name := range []string{"s/b", "s/c"} {
		if h := l[name]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "s/a" {
			t.Errorf("%s should link to s/a: %+v", name, h)
		}
	}

	removed := buildkitAdd(t, base, "RUN /bin/sh -c change # buildkit", layerOf(t,
		dir("s/", 0o755), file("s/a", "new data", 0o4750), file("s/.wh.b", "", 0)))
	dockerfile = []byte("FROM busybox\nRUN make-links\nRUN change\n")
	l = shapedEntries(t, testOptions{image: removed, Options: Options{WorkDir: t.TempDir(), Reproducible: true, Dockerfile: dockerfile}})[1]
	if h := l["s/b"]; h != nil {
		t.Errorf("a name the RUN deleted came back: %+v", h)
	}
	if h := l["s/c"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "s/a" {
		t.Errorf("s/c should link to s/a: %+v", h)
	}
}
