package shape

import (
	"archive/tar"
	"errors"
	"io"
	"io/fs"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// testMemo keeps entries in memory; recall limits which keys it answers.
type testMemo struct {
	entries  map[string]*MemoEntry
	layers   map[string]v1.Layer
	indexes  map[v1.Hash]v1.Layer
	order    []string // keys in the order they were remembered
	recall   func(key string) bool
	recalled []string
}

func newTestMemo() *testMemo {
	return &testMemo{entries: map[string]*MemoEntry{}, layers: map[string]v1.Layer{}, indexes: map[v1.Hash]v1.Layer{}}
}

func (m *testMemo) Recall(key string) (*MemoEntry, v1.Layer, bool) {
	e, ok := m.entries[key]
	if !ok || (m.recall != nil && !m.recall(key)) {
		return nil, nil, false
	}
	return e, m.layers[key], true
}

// Remember counts an entry it handed out as reused.
func (m *testMemo) Remember(e *MemoEntry, l v1.Layer) {
	old, ok := m.entries[e.Key]
	if !ok {
		m.order = append(m.order, e.Key)
	}
	if old == e {
		m.recalled = append(m.recalled, e.CreatedBy)
		return
	}
	m.entries[e.Key], m.layers[e.Key] = e, l
}

func (m *testMemo) Index(layer v1.Hash) (v1.Layer, bool) {
	l, ok := m.indexes[layer]
	return l, ok
}

func (m *testMemo) RememberIndex(layer v1.Hash, index v1.Layer) { m.indexes[layer] = index }

// again is a memo holding what m learnt, answering afresh.
func (m *testMemo) again() *testMemo {
	return &testMemo{entries: maps.Clone(m.entries), layers: maps.Clone(m.layers), indexes: maps.Clone(m.indexes), order: m.order}
}

// memoContext is the build context of memoImage's COPY.
var memoContext = map[string]Source{"tree": {Mode: fs.ModeDir | 0o750, Uid: 2000, Gid: 2001}}

func contextOf(files map[string]Source) func(string) (Source, error) {
	return func(rel string) (Source, error) {
		if s, ok := files[rel]; ok {
			return s, nil
		}
		return Source{}, fs.ErrNotExist
	}
}

// memoImage has layers whose shaping depends on each other: the WORKDIR's
// rules leave fixes the RUN's layer needs (it repeats srv/ with BuildKit's
// owner), the COPY depends on the build context, the RUN's symlink target
// is read from the base.
func memoImage(t *testing.T) (v1.Image, []byte) {
	img := buildkitAdd(t, baseImage(t), "WORKDIR /srv/owned", layerOf(t, owned(dir("srv/", 0o755), 1000, 1000), owned(dir("srv/owned/", 0o755), 1000, 1000)))
	img = buildkitAdd(t, img, "RUN /bin/sh -c touch /srv/x # buildkit", layerOf(t, owned(dir("srv/", 0o755), 1000, 1000), file("srv/x", "", 0o644)))
	img = buildkitAdd(t, img, "COPY tree /deep/tree # buildkit", layerOf(t, owned(dir("deep/", 0o755), 7, 7), dir("deep/tree/", 0o755), owned(file("deep/tree/a", "a", 0o644), 2000, 2001)))
	img = buildkitAdd(t, img, "RUN /bin/sh -c ln -s /etc/passwd /opt/pw # buildkit", layerOf(t, dir("opt/", 0o755), symlink("opt/pw", "../etc/passwd")))
	dockerfile := []byte("FROM busybox\nUSER user\nWORKDIR /srv/owned\nUSER root\nRUN touch /srv/x\nCOPY tree /deep/tree\nRUN ln -s /etc/passwd /opt/pw\n")
	return img, dockerfile
}

func shapeWith(t *testing.T, img v1.Image, opts Options) v1.Hash {
	t.Helper()
	opts.WorkDir = t.TempDir()
	got, err := Kaniko(img, opts)
	if err != nil {
		t.Fatal(err)
	}
	return digest(t, got)
}

// leftOut is a layer whose bytes BuildKit never exported.
type leftOut struct{ v1.Layer }

var errLeftOut = errors.New("left out of the export")

func (leftOut) Compressed() (io.ReadCloser, error)   { return nil, errLeftOut }
func (leftOut) Uncompressed() (io.ReadCloser, error) { return nil, errLeftOut }

// withLayers is img with other layers (same digests).
type withLayers struct {
	v1.Image
	layers []v1.Layer
}

func (w withLayers) Layers() ([]v1.Layer, error) { return w.layers, nil }

// leaveOut replaces img's layers at idxs with unreadable ones.
func leaveOut(t *testing.T, img v1.Image, idxs ...int) v1.Image {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range idxs {
		layers[i] = leftOut{layers[i]}
	}
	return withLayers{Image: img, layers: layers}
}

func TestMemoGivesTheImageShapingFromScratchGives(t *testing.T) {
	for _, reproducible := range []bool{false, true} {
		img, dockerfile := memoImage(t)
		opts := Options{Reproducible: reproducible, Dockerfile: dockerfile, ContextSource: contextOf(memoContext), MemoVersion: "v1"}
		scratch := shapeWith(t, img, opts)

		learn := newTestMemo()
		opts.Memo = learn
		if got := shapeWith(t, img, opts); got != scratch {
			t.Fatalf("reproducible=%v: shaping while learning gives %s, from scratch %s", reproducible, got, scratch)
		}
		instructions := 4
		if reproducible {
			instructions++ // the re-tarred base layer
		}
		if len(learn.order) != instructions || len(learn.indexes) != 5 {
			t.Fatalf("reproducible=%v: memo learnt %d entries and %d indexes, want %d and one index per layer", reproducible, len(learn.order), len(learn.indexes), instructions)
		}

		// Every layer recalled: BuildKit's layers are not even readable.
		all := learn.again()
		opts.Memo = all
		if got := shapeWith(t, leaveOut(t, img, 0, 1, 2, 3, 4), opts); got != scratch {
			t.Errorf("reproducible=%v: all layers recalled gives %s, want %s", reproducible, got, scratch)
		}
		if len(all.recalled) != instructions {
			t.Errorf("reproducible=%v: recalled %q, want all %d", reproducible, all.recalled, instructions)
		}

		// The first instruction layers recalled, the rest shaped on top of
		// them: with the fixes they left, lower trees from their indexes.
		for n := 1; n < 4; n++ {
			memo := learn.again()
			keep, keys := map[string]bool{}, learn.order
			if reproducible {
				keep[keys[0]], keys = true, keys[1:]
			}
			var left []int
			for i, k := range keys[:n] {
				keep[k] = true
				left = append(left, i+1)
			}
			memo.recall = func(key string) bool { return keep[key] }
			opts.Memo = memo
			if got := shapeWith(t, leaveOut(t, img, left...), opts); got != scratch {
				t.Errorf("reproducible=%v, %d instruction layers recalled: %s, want %s", reproducible, n, got, scratch)
			}
		}
	}
}

func TestMemoAsksTheBuildContextAgain(t *testing.T) {
	img, dockerfile := memoImage(t)
	learn := newTestMemo()
	opts := Options{Dockerfile: dockerfile, ContextSource: contextOf(memoContext), Memo: learn, MemoVersion: "v1"}
	shapeWith(t, img, opts)

	changed := map[string]Source{"tree": {Mode: fs.ModeDir | 0o700, Uid: 2000, Gid: 2001}}
	opts.ContextSource = contextOf(changed)
	opts.Memo = nil
	scratch := shapeWith(t, img, opts)
	again := learn.again()
	opts.Memo = again
	if got := shapeWith(t, img, opts); got != scratch {
		t.Errorf("with the context changed the memo gives %s, shaping from scratch %s", got, scratch)
	}
	if want := []string{"WORKDIR /srv/owned", "RUN touch /srv/x"}; !reflect.DeepEqual(again.recalled, want) {
		t.Errorf("recalled %q, want only the layers below the COPY %q", again.recalled, want)
	}
}

func TestMemoKeysCoverTheOptions(t *testing.T) {
	img, dockerfile := memoImage(t)
	base := Options{Dockerfile: dockerfile, ContextSource: contextOf(memoContext), MemoVersion: "v1"}
	learn := newTestMemo()
	learnt := base
	learnt.Memo = learn
	shapeWith(t, img, learnt)
	epoch := int64(1700000000)
	for name, change := range map[string]func(*Options){
		"kiln version":      func(o *Options) { o.MemoVersion = "v2" },
		"--reproducible":    func(o *Options) { o.Reproducible = true },
		"SOURCE_DATE_EPOCH": func(o *Options) { o.Reproducible, o.SourceDateEpoch = true, &epoch },
		"--ignore-path":     func(o *Options) { o.IgnorePaths = []string{"/srv/x"} },
		"compression level": func(o *Options) { o.CompressionLevel = 9 },
		"no build context":  func(o *Options) { o.ContextSource = nil },
		"the instruction": func(o *Options) {
			o.Dockerfile = []byte("FROM busybox\nWORKDIR /srv/owned\nRUN touch /srv/x\nCOPY --chown=1:1 tree /deep/tree\nRUN ln -s /etc/passwd /opt/pw\n")
		},
	} {
		opts := base
		change(&opts)
		memo := learn.again()
		opts.Memo = memo
		shapeWith(t, img, opts)
		for _, what := range memo.recalled {
			if name != "the instruction" || what == "COPY tree /deep/tree" {
				t.Errorf("%s changed, yet %q was recalled", name, what)
			}
		}
	}
}

func TestHeaderIndexGivesTheSameLowerTree(t *testing.T) {
	long := file("usr/share/very/long/"+strings.Repeat("n", 150), "long", 0o644)
	capEntry := file("bin/ping", "ping", 0o4755)
	capEntry.hdr.PAXRecords = map[string]string{capabilityXattr: "\x01"}
	big := owned(file("srv/big-ids", "x", 0o600), 1<<22, 1<<22)
	big.hdr.ModTime, big.hdr.Format = buildTime.Add(123456789), tar.FormatPAX // sub-second
	l := layerOf(t, dir("bin/", 0o755), capEntry, long, big,
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "bin/ping2", Linkname: "bin/ping", ModTime: buildTime}},
		symlink("bin/sh", "busybox"), file("etc/.wh.gone", "", 0), file("opt/.wh..wh..opq", "", 0),
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Devmajor: 1, Devminor: 3, Mode: 0o666, ModTime: buildTime}})

	direct := tree{"etc/gone": {Typeflag: tar.TypeReg}, "opt/old": {Typeflag: tar.TypeReg}}
	x := newIndexWriter(t.TempDir())
	if err := applyRecording(direct, l, x.add); err != nil {
		t.Fatal(err)
	}
	index, ok := x.finish()
	if !ok {
		t.Fatalf("no index: %v", x.err)
	}
	hdrs, err := readIndex(index)
	if err != nil {
		t.Fatal(err)
	}
	fromIndex := tree{"etc/gone": {Typeflag: tar.TypeReg}, "opt/old": {Typeflag: tar.TypeReg}}
	for _, h := range hdrs {
		fromIndex.add(h)
	}
	if len(fromIndex) != len(direct) {
		t.Fatalf("index tree has %d entries, the layer's %d", len(fromIndex), len(direct))
	}
	for p, want := range direct {
		got := fromIndex[p]
		if got == nil {
			t.Errorf("%s missing from the index tree", p)
			continue
		}
		// Every field the rules and Kaniko's headers read.
		if got.Typeflag != want.Typeflag || got.Linkname != want.Linkname || got.Size != want.Size || got.Mode != want.Mode ||
			got.Uid != want.Uid || got.Gid != want.Gid || !got.ModTime.Equal(want.ModTime) || got.Devmajor != want.Devmajor || got.Devminor != want.Devminor {
			t.Errorf("%s: index gives %+v, the layer %+v", p, got, want)
		}
	}
}

func TestEngineHeadersStandInForLowerLayers(t *testing.T) {
	img, dockerfile := memoImage(t)
	opts := Options{Dockerfile: dockerfile, ContextSource: contextOf(memoContext)}
	scratch := shapeWith(t, img, opts)

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	base, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	hdrs, err := readIndex(layers[0]) // a plain layer reads as its own index
	if err != nil {
		t.Fatal(err)
	}

	// Shaping reads the base layer's file data where it needs it, but not
	// the whole layer for its headers.
	reads := func(layerHeaders func(v1.Hash) ([]*tar.Header, bool)) int {
		n := 0
		counted := slices.Clone(layers)
		counted[0] = readCounter{Layer: layers[0], n: &n}
		opts.LayerHeaders = layerHeaders
		if got := shapeWith(t, withLayers{Image: img, layers: counted}, opts); got != scratch {
			t.Errorf("shaping with engine headers %v gives %s, from the layer %s", layerHeaders != nil, got, scratch)
		}
		return n
	}
	asked := 0
	withHeaders := reads(func(blob v1.Hash) ([]*tar.Header, bool) {
		asked++
		return hdrs, blob == base
	})
	without := reads(nil)
	if asked == 0 || withHeaders >= without {
		t.Errorf("the base layer was read %d times with the engine's headers (asked %d times), %d without", withHeaders, asked, without)
	}
}

// readCounter counts the reads of a layer's bytes.
type readCounter struct {
	v1.Layer
	n *int
}

func (r readCounter) Compressed() (io.ReadCloser, error) {
	*r.n++
	return r.Layer.Compressed()
}

func (r readCounter) Uncompressed() (io.ReadCloser, error) {
	*r.n++
	return r.Layer.Uncompressed()
}
