package golden

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/kilnbuild/kiln/conformance/corpus"
	"github.com/kilnbuild/kiln/conformance/inspect"
	"github.com/kilnbuild/kiln/conformance/kaniko"
)

func TestKanikoMessageAndClass(t *testing.T) {
	out := "INFO[0000] Running: [/bin/sh -c exit 42]\n" +
		"error building image: error building stage: failed to execute command: waiting for process to exit: exit status 42\n"
	msg := KanikoMessage(out, nil)
	if msg != "error building image: error building stage: failed to execute command: waiting for process to exit: exit status 42" {
		t.Fatalf("message = %q", msg)
	}
	if c := ClassifyKaniko(msg); c != ClassRunFailed {
		t.Errorf("class = %s, want %s", c, ClassRunFailed)
	}
	fetch := KanikoMessage("error building image: invalid response status 404 from http://127.0.0.1:9/x/missing.txt\n",
		map[string]string{"http://127.0.0.1:9/x": "<http>"})
	if fetch != "error building image: invalid response status 404 from <http>/missing.txt" {
		t.Errorf("addresses not replaced: %q", fetch)
	}
	if c := ClassifyKaniko(fetch); c != ClassFetchFailed {
		t.Errorf("class = %s, want %s", c, ClassFetchFailed)
	}
	if c := ClassifyKaniko("something unexpected"); c != ClassOther {
		t.Errorf("class = %s, want %s", c, ClassOther)
	}
}

func TestCompare(t *testing.T) {
	a := &inspect.Image{ManifestDigest: "m1", ConfigDigest: "c", FilesystemDigest: "f",
		Layers: []inspect.Layer{{DiffID: "d1", EntriesDigest: "e1", Entries: []inspect.Entry{{Path: "x", Type: "file", SHA256: "1"}}}}}
	if d := Compare(a, a); d != nil {
		t.Fatalf("identical images differ: %v", d)
	}
	b := *a
	b.ManifestDigest = "m2"
	b.FilesystemDigest = "g"
	b.Layers = []inspect.Layer{{DiffID: "d2", EntriesDigest: "e2", Entries: []inspect.Entry{{Path: "x", Type: "file", SHA256: "2"}}}}
	d := Compare(a, &b)
	if len(d) != 2 || d[0] != "layer 0 diff_id: entries x" || d[1] != "filesystem" {
		t.Fatalf("differences = %q", d)
	}
}

// kanikoE2EEnv opts in to TestKanikoEndToEnd (make golden-check sets it).
const kanikoE2EEnv = "KILN_KANIKO_E2E"

// TestKanikoEndToEnd runs the real Kaniko on two corpus cases and checks
// the result against the committed goldens. Building Kaniko downloads a Go
// 1.22 toolchain, and Kaniko is not rebuilt in CI, so it runs only on request.
func TestKanikoEndToEnd(t *testing.T) {
	if os.Getenv(kanikoE2EEnv) != "1" {
		t.Skipf("LOUD SKIP: Kaniko's end-to-end check did NOT run: it builds Kaniko v%s (downloading a Go toolchain); set %s=1 or run make golden-check",
			strings.TrimPrefix(kaniko.Version, "v"), kanikoE2EEnv)
	}
	if err := kaniko.CheckHost(); err != nil {
		t.Fatalf("this test runs Kaniko and needs: %v", err)
	}
	if testing.Short() {
		t.Skip("LOUD SKIP: -short set; the Kaniko end-to-end test builds and runs Kaniko")
	}
	all, err := corpus.Load("../cases")
	if err != nil {
		t.Fatal(err)
	}
	cases, err := corpus.Closure(all, []string{"copy-basic", "run-exit-code"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h, err := NewHarness(ctx, HarnessOptions{Cases: cases})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.ScratchDir = t.TempDir()
	for _, c := range cases {
		g, _, err := h.Generate(ctx, c, 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckExpectation(c, g); err != nil {
			t.Error(err)
		}
		if !g.Deterministic {
			t.Errorf("%s: kaniko not deterministic: %v", c.Name, g.Differences)
		}
		want, err := Read("../golden", c.Name)
		if err != nil {
			t.Fatal(err)
		}
		if stale := StaleBases(want, h.CaseBases(c)); len(stale) > 0 {
			t.Fatalf("%s: the committed golden is stale (%s): regenerate with make golden", c.Name, strings.Join(stale, "; "))
		}
		if g.Outcome != want.Outcome {
			t.Errorf("%s: outcome %+v, golden %+v", c.Name, g.Outcome, want.Outcome)
		}
		if (g.Image == nil) != (want.Image == nil) {
			t.Fatalf("%s: image presence differs from golden", c.Name)
		}
		if g.Image != nil && g.Image.ManifestDigest != want.Image.ManifestDigest {
			t.Errorf("%s: manifest %s, golden %s: %v", c.Name, g.Image.ManifestDigest, want.Image.ManifestDigest, Compare(want.Image, g.Image))
		}
	}
}

func TestStaleBases(t *testing.T) {
	here := map[string]string{"library/busybox:latest": "sha256:a", "library/debian:bookworm": "sha256:d"}
	if s := StaleBases(&Golden{Bases: map[string]string{"library/busybox:latest": "sha256:a"}}, here); len(s) != 0 {
		t.Fatalf("matching bases reported stale: %v", s)
	}
	s := StaleBases(&Golden{Bases: map[string]string{"library/busybox:latest": "sha256:b"}}, here)
	if len(s) != 1 || !strings.Contains(s[0], "library/busybox:latest is sha256:a here, the golden was made from sha256:b") {
		t.Fatalf("changed base: %v", s)
	}
	if s := StaleBases(&Golden{}, here); len(s) != 1 || !strings.Contains(s[0], "records no base image digests") {
		t.Fatalf("golden without bases: %v", s)
	}
}
