package runner

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kilnbuild/kiln/conformance/corpus"
	"github.com/kilnbuild/kiln/conformance/golden"
	"github.com/kilnbuild/kiln/conformance/inspect"
	"github.com/kilnbuild/kiln/internal/testenv"
)

func TestClassifyKiln(t *testing.T) {
	out := "\x1b[36mINFO\x1b[0m[0001] RUN exit 42\n" +
		"Error: error building image: failed to solve: process \"/bin/sh -c exit 42\" did not complete successfully: exit code: 42\n"
	msg := KilnMessage(out, nil)
	if msg != `error building image: failed to solve: process "/bin/sh -c exit 42" did not complete successfully: exit code: 42` {
		t.Fatalf("message = %q", msg)
	}
	for message, want := range map[string]string{
		msg: golden.ClassRunFailed,
		`failed to solve: failed to load cache key: invalid response status 404`:                                                                       golden.ClassFetchFailed,
		`failed to solve: busybox:nope: failed to resolve source metadata for docker.io/library/busybox:nope`:                                          golden.ClassBaseMissing,
		`failed to solve: failed to compute cache key: "/missing.txt": not found`:                                                                      golden.ClassSourceMissing,
		`dockerfile parse error on line 2: unknown instruction: FROBNICATE`:                                                                            golden.ClassParse,
		`error building image: COPY a.txt /: a.txt not found in the build context /src: source paths are relative to the context`:                      golden.ClassSourceMissing,
		`error building image: COPY --from=biuld: no stage is named biuld, and as an image it could not be retrieved (404)`:                            golden.ClassBaseMissing,
		`error building image: RUN echo hi: starting command: exec: "/bin/sh": stat /bin/sh: no such file or directory: the stage has no such program`: golden.ClassSourceMissing,
		`something unforeseen`: golden.ClassOther,
	} {
		if got := ClassifyKiln(message); got != want {
			t.Errorf("ClassifyKiln(%q) = %s, want %s", message, got, want)
		}
	}
}

// entry is a file whose content is the text body.
func entry(path, mode, body string) inspect.Entry {
	return inspect.Entry{Path: path, Type: inspect.TypeFile, Mode: mode, SHA256: body}
}

// syntheticImage builds an image whose layers hold the given entries and
// inspects it; history is dropped so only layers differ between images.
func syntheticImage(t *testing.T, layers ...[]inspect.Entry) *inspect.Image {
	t.Helper()
	var vls []v1.Layer
	for _, l := range layers {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range l {
			mode, _ := strconv.ParseInt(e.Mode, 8, 64)
			body := []byte(e.SHA256)
			if err := tw.WriteHeader(&tar.Header{Name: e.Path, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(body))}); err != nil {
				t.Fatal(err)
			}
			tw.Write(body)
		}
		tw.Close()
		layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		vls = append(vls, layer)
	}
	img, err := mutate.AppendLayers(empty.Image, vls...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := inspect.Inspect(img, inspect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out.Config.History = nil
	return out
}

func TestCompareLevels(t *testing.T) {
	base := []inspect.Entry{entry("bin/sh", "0755", "a")}
	want := syntheticImage(t, base, []inspect.Entry{entry("app/x", "0644", "b")})
	g := &golden.Golden{Outcome: golden.Outcome{Result: corpus.OutcomeBuilt}, Image: want, Deterministic: true}

	same := Compare(g, golden.Outcome{Result: corpus.OutcomeBuilt}, want)
	if same.Level != corpus.LevelDigest {
		t.Fatalf("identical image reaches %d: %v", same.Level, same.Diffs)
	}

	// Same files in a different layer split: L2 holds, L3 and L4 do not.
	split := syntheticImage(t, append(base, entry("app/x", "0644", "b")))
	c := Compare(g, golden.Outcome{Result: corpus.OutcomeBuilt}, split)
	if c.Level != corpus.LevelFiles || c.Pass[corpus.LevelLayers] || c.Pass[corpus.LevelDigest] {
		t.Fatalf("re-split layers: level %d, pass %v", c.Level, c.Pass)
	}
	if !strings.Contains(strings.Join(c.Diffs[corpus.LevelLayers], "\n"), "layer count: kaniko 2, kiln 1") {
		t.Errorf("layer diff does not name the count: %v", c.Diffs[corpus.LevelLayers])
	}

	// A changed config field fails L1 and names the field.
	cfg := *split
	cfg.Config.Config.User = "app"
	c = Compare(g, golden.Outcome{Result: corpus.OutcomeBuilt}, &cfg)
	if c.Level != corpus.LevelOutcome || !strings.Contains(strings.Join(c.Diffs[corpus.LevelConfig], "\n"), `config.User: kaniko (absent), kiln "app"`) {
		t.Fatalf("config change: level %d, diffs %v", c.Level, c.Diffs[corpus.LevelConfig])
	}

	// History is summarised per attribute.
	dated := *want
	dated.Config.History = []inspect.History{{CreatedBy: "COPY x /x # buildkit", Dated: true}}
	c = Compare(g, golden.Outcome{Result: corpus.OutcomeBuilt}, &dated)
	if d := strings.Join(c.Diffs[corpus.LevelConfig], "\n"); !strings.Contains(d, `history created_by: kaniko []; kiln ["COPY x /x # buildkit"]`) ||
		!strings.Contains(d, "history dated: kaniko 0 of 0 entries, kiln 1 of 1") {
		t.Errorf("history diff = %q", d)
	}

	// A different outcome fails L0 and nothing else is compared.
	failed := golden.Outcome{Result: corpus.OutcomeFailed, ExitCode: 1, Class: golden.ClassRunFailed}
	c = Compare(g, failed, nil)
	if c.Level != corpus.LevelNone || len(c.Diffs[corpus.LevelOutcome]) != 1 {
		t.Fatalf("outcome change: level %d, diffs %v", c.Level, c.Diffs)
	}

	// Both failing the same way holds at every level; another class does not.
	gf := &golden.Golden{Outcome: failed, Deterministic: true}
	if c := Compare(gf, failed, nil); c.Level != corpus.LevelDigest {
		t.Fatalf("same failure reaches %d", c.Level)
	}
	other := failed
	other.Class = golden.ClassParse
	if c := Compare(gf, other, nil); c.Level != corpus.LevelNone || !strings.Contains(c.Diffs[0][0], "failure class: kaniko run-failed, kiln dockerfile-invalid") {
		t.Fatalf("other failure class: level %d, diffs %v", c.Level, c.Diffs[0])
	}
}

func TestReport(t *testing.T) {
	c := &corpus.Case{Name: "demo"}
	results := []*Result{
		{Case: c, Mode: Root, Expected: corpus.Expectation{Level: corpus.LevelFiles, Reason: "history differs", Deliberate: "Kaniko defect"}, Status: AsExpected,
			Comparison: Comparison{Level: corpus.LevelFiles, Pass: [LevelCount]bool{true, true, true},
				Diffs: [LevelCount][]string{corpus.LevelLayers: {"layer 1: only in kiln: x"}}}},
		{Case: c, Mode: Rootless, Expected: corpus.Expectation{Level: corpus.LevelFiles, Reason: "history differs"}, Status: Regressed,
			Comparison: Comparison{Level: corpus.LevelOutcome, Pass: [LevelCount]bool{true},
				Diffs: [LevelCount][]string{corpus.LevelConfig: {"config.User: kaniko (absent), kiln \"app\""}}}},
		{Case: c, Mode: Plain, Expected: corpus.Expectation{Level: corpus.PlainTop}, Status: AsExpected,
			Comparison: Comparison{Level: corpus.PlainTop, Pass: [LevelCount]bool{true, true, true, true}}},
	}
	report := Report(results)
	for _, want := range []string{
		"| root | cumulative | 1 | 1 (100%) | 1 (100%) | 1 (100%) | 0 (0%) | 0 (0%) | 1 | 0 | 0 | 0 | 0 |",
		"| rootless | cumulative | 1 | 1 (100%) | 0 (0%) | 0 (0%) | 0 (0%) | 0 (0%) | 0 | 1 | 0 | 0 | 0 |",
		"| plain | cumulative | 1 | 1 (100%) | 1 (100%) | 1 (100%) | 1 (100%) | n/a | 0 | 0 | 0 | 0 | 0 |",
		"| demo | L2 | L0 (REGRESSED; expected L2) | L3 | history differs — *deliberate*: Kaniko defect / history differs |",
		"### demo (root)", "`layer 1: only in kiln: x`",
		"### demo (rootless)", "`config.User: kaniko (absent), kiln \"app\"`",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if failed := Failed(results); len(failed) != 1 || failed[0].Mode != Rootless {
		t.Errorf("Failed = %v", failed)
	}
}

// TestSuiteCatchesFlippedMode builds a case with kiln, flips one file's mode
// in kiln's image and shows the suite sees it at L2, L3 and L4 but not at L0
// or L1 — against kiln's own image as reference and against Kaniko's golden.
func TestSuiteCatchesFlippedMode(t *testing.T) {
	testenv.RequireRoot(t)
	bins := testenv.Binaries(t)
	all, err := corpus.Load(casesDir)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := corpus.Get(all, "copy-basic")
	b, err := newBuilder(Config{Executor: bins.Executor, Cases: []*corpus.Case{c}, ScratchDir: testenv.ReadableTempDir(t)}, Root)
	if err != nil {
		t.Fatal(err)
	}
	defer b.harness.Close()
	built, err := b.build(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if built.Image == nil {
		t.Fatalf("kiln did not build copy-basic: %+v", built.Outcome)
	}
	ref := b.harness.Registry.Host + "/cases/copy-basic@" + built.Image.ManifestDigest
	parsed, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(parsed, b.harness.Registry.RemoteOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	flipped := flipMode(t, img, "data/hello.txt")
	mutated, err := inspect.Inspect(flipped, inspect.Options{})
	if err != nil {
		t.Fatal(err)
	}

	// Reference: kiln's own image, listed like a golden (big layers by digest only).
	own, err := inspect.Inspect(img, inspect.Options{MaxListedEntries: golden.MaxListedEntries})
	if err != nil {
		t.Fatal(err)
	}
	ref0 := &golden.Golden{Outcome: golden.Outcome{Result: corpus.OutcomeBuilt}, Image: own, Deterministic: true}
	if c := Compare(ref0, built.Outcome, built.Image); c.Level != corpus.LevelDigest {
		t.Fatalf("kiln's image against itself reaches %s: %v", corpus.LevelName(c.Level), c.Diffs)
	}
	cmp := Compare(ref0, built.Outcome, mutated)
	if !cmp.Pass[corpus.LevelOutcome] || !cmp.Pass[corpus.LevelConfig] {
		t.Fatalf("a flipped mode broke L0/L1: %v", cmp.Diffs)
	}
	for _, l := range []int{corpus.LevelFiles, corpus.LevelLayers, corpus.LevelDigest} {
		if cmp.Pass[l] {
			t.Errorf("a flipped mode passes %s", corpus.LevelName(l))
		}
	}
	if d := strings.Join(cmp.Diffs[corpus.LevelFiles], "\n"); !strings.Contains(d, "data/hello.txt: mode 0644→0600") {
		t.Errorf("L2 diff does not name the flipped file: %q", d)
	}

	// Against Kaniko's golden the mutation can only lower the level.
	g, err := golden.Read(goldenDir, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	before, after := Compare(g, built.Outcome, built.Image), Compare(g, built.Outcome, mutated)
	if after.Pass[corpus.LevelFiles] || after.Level > before.Level {
		t.Errorf("against the golden: before %s, after flipping %s (L2 pass %v)", corpus.LevelName(before.Level), corpus.LevelName(after.Level), after.Pass[corpus.LevelFiles])
	}
}

// flipMode rewrites the layer holding path with the file's mode set to 0600,
// keeping the config (history, env, …) as it was.
func flipMode(t *testing.T, img v1.Image, path string) v1.Image {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	var newLayers []v1.Layer
	found := false
	for i, l := range layers {
		data, changed := rewriteMode(t, l, path)
		if changed {
			found = true
			l, err = tarball.LayerFromReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			d, err := l.DiffID()
			if err != nil {
				t.Fatal(err)
			}
			cf.RootFS.DiffIDs[i] = d
		}
		newLayers = append(newLayers, l)
	}
	if !found {
		t.Fatalf("no layer holds %s", path)
	}
	out, err := mutate.AppendLayers(empty.Image, newLayers...)
	if err != nil {
		t.Fatal(err)
	}
	out, err = mutate.ConfigFile(out, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func rewriteMode(t *testing.T, l v1.Layer, path string) ([]byte, bool) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	changed := false
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(hdr.Name, "./") == path || strings.TrimPrefix(hdr.Name, "/") == path {
			hdr.Mode = 0o600
			changed = true
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), changed
}

func TestJudge(t *testing.T) {
	l0plusL2 := Comparison{Level: corpus.LevelOutcome, Pass: [LevelCount]bool{true, false, true}}
	want := corpus.Expectation{Level: corpus.LevelOutcome, Holds: []int{corpus.LevelFiles}, Reason: "history"}
	if s := judge(l0plusL2, want); s != AsExpected {
		t.Errorf("matching expectation judged %s", s)
	}
	lostFiles := Comparison{Level: corpus.LevelOutcome, Pass: [LevelCount]bool{true}}
	if s := judge(lostFiles, want); s != Regressed {
		t.Errorf("L2 no longer holding judged %s", s)
	}
	if s := judge(Comparison{Level: corpus.LevelNone}, want); s != Regressed {
		t.Errorf("lost outcome judged %s", s)
	}
	gainedLayers := Comparison{Level: corpus.LevelOutcome, Pass: [LevelCount]bool{true, false, true, true}}
	if s := judge(gainedLayers, want); s != Improved {
		t.Errorf("L3 newly holding judged %s", s)
	}
}

func TestParseModes(t *testing.T) {
	modes, err := ParseModes("plain, root,plain")
	if err != nil || len(modes) != 2 || modes[0] != Plain || modes[1] != Root {
		t.Fatalf("ParseModes = %v, %v", modes, err)
	}
	if _, err := ParseModes("rootful"); err == nil || !strings.Contains(err.Error(), "root,rootless,plain") {
		t.Errorf("unknown mode: %v", err)
	}
	if Plain.TopLevel() != corpus.PlainTop || Root.TopLevel() != corpus.LevelDigest {
		t.Error("top levels")
	}
}
