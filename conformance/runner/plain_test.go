package runner

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kilnbuild/kiln/conformance/corpus"
	"github.com/kilnbuild/kiln/conformance/golden"
	"github.com/kilnbuild/kiln/conformance/inspect"
)

// plainBuild describes a two-layer image: a base layer with its two history
// entries (no author, like the harness's bases) and one RUN layer.
type plainBuild struct {
	at        time.Time // every time in the image; zero is --reproducible's
	runAuthor string
	runText   string
	fileMode  int64 // of app/x in the RUN layer
}

func (p plainBuild) image(t *testing.T) *inspect.Image {
	t.Helper()
	layer := func(entries ...tar.Header) v1.Layer {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, hdr := range entries {
			hdr.ModTime = p.at
			if !p.at.IsZero() {
				hdr.Format, hdr.AccessTime, hdr.ChangeTime = tar.FormatPAX, p.at, p.at
			}
			if err := tw.WriteHeader(&hdr); err != nil {
				t.Fatal(err)
			}
			tw.Write(make([]byte, hdr.Size))
		}
		tw.Close()
		l, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	created := v1.Time{Time: p.at}
	img, err := mutate.Append(empty.Image,
		mutate.Addendum{
			Layer:   layer(tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, tar.Header{Name: "bin/sh", Typeflag: tar.TypeReg, Mode: 0o755, Size: 3}),
			History: v1.History{CreatedBy: "base rootfs", Created: created},
		},
		mutate.Addendum{History: v1.History{CreatedBy: `CMD ["sh"]`, EmptyLayer: true, Created: created}},
		mutate.Addendum{
			Layer:   layer(tar.Header{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755}, tar.Header{Name: "app/x", Typeflag: tar.TypeReg, Mode: p.fileMode, Size: 1}),
			History: v1.History{CreatedBy: p.runText, Author: p.runAuthor},
		})
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.CreatedAt(img, created); err != nil {
		t.Fatal(err)
	}
	out, err := inspect.Inspect(img, inspect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestComparePlain: an image built without --reproducible matches Kaniko's
// --reproducible golden up to L3 when only times (and the authors
// --reproducible clears) differ, and still fails on anything else.
func TestComparePlain(t *testing.T) {
	reproducible := plainBuild{runAuthor: "", runText: "RUN make", fileMode: 0o644}
	g := &golden.Golden{Outcome: golden.Outcome{Result: corpus.OutcomeBuilt}, Image: reproducible.image(t), Deterministic: true}
	bases := [][]inspect.History{{{CreatedBy: "base rootfs"}, {CreatedBy: `CMD ["sh"]`, EmptyLayer: true}}}
	built := golden.Outcome{Result: corpus.OutcomeBuilt}

	plain := plainBuild{at: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), runAuthor: kanikoAuthor, runText: "RUN make", fileMode: 0o644}
	img := plain.image(t)
	if img.Layers[1].DiffID == g.Image.Layers[1].DiffID {
		t.Fatal("the plain build's layer has the golden's bytes: its times are not set")
	}
	c := ComparePlain(g, built, img, bases)
	if c.Level != corpus.PlainTop || c.Pass[corpus.LevelDigest] || c.Diffs[corpus.LevelDigest] != nil {
		t.Fatalf("times only: level %s, pass %v, diffs %v", corpus.LevelName(c.Level), c.Pass, c.Diffs)
	}
	// The same image judged as a --reproducible build differs in its history.
	if c := Compare(g, built, img); c.Pass[corpus.LevelConfig] {
		t.Error("Compare ignores history dates and authors: the plain mode proves nothing")
	}

	for _, tc := range []struct {
		what  string
		build plainBuild
		level int    // reached
		diff  string // in the first failing level's diffs
	}{
		{"mode bit", plainBuild{plain.at, kanikoAuthor, "RUN make", 0o600}, corpus.LevelConfig, "app/x: mode 0644→0600"},
		{"created_by", plainBuild{plain.at, kanikoAuthor, "RUN make all", 0o644}, corpus.LevelOutcome, `history created_by: kaniko ["base rootfs", "CMD [\"sh\"]", "RUN make"]; kiln ["base rootfs", "CMD [\"sh\"]", "RUN make all"]`},
		{"author", plainBuild{plain.at, "", "RUN make", 0o644}, corpus.LevelOutcome, `history author: kaniko ["", "", "kaniko"]; kiln ["", "", ""]`},
	} {
		c := ComparePlain(g, built, tc.build.image(t), bases)
		if c.Level != tc.level {
			t.Errorf("%s: level %s, want %s (diffs %v)", tc.what, corpus.LevelName(c.Level), corpus.LevelName(tc.level), c.Diffs)
			continue
		}
		if d := strings.Join(c.Diffs[tc.level+1], "\n"); !strings.Contains(d, tc.diff) {
			t.Errorf("%s: L%d diff %q lacks %q", tc.what, tc.level+1, d, tc.diff)
		}
	}

	// Without the base's history every entry is taken for Kaniko's own.
	if c := ComparePlain(g, built, img, nil); c.Pass[corpus.LevelConfig] {
		t.Error("base entries expected with author kaniko still pass")
	}
	// Both failing the same way holds up to L3 only.
	failed := golden.Outcome{Result: corpus.OutcomeFailed, ExitCode: 1, Class: golden.ClassRunFailed}
	if c := ComparePlain(&golden.Golden{Outcome: failed}, failed, nil, bases); c.Level != corpus.PlainTop || c.Pass[corpus.LevelDigest] {
		t.Errorf("same failure: level %s, pass %v", corpus.LevelName(c.Level), c.Pass)
	}
}
