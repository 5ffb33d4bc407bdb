package main

import (
	"bufio"
	"errors"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestMedian(t *testing.T) {
	if got := median([]int64{5, 1, 3}); got != 3 {
		t.Errorf("odd count: got %d, want 3", got)
	}
	if got := median([]time.Duration{4, 1, 3, 2}); got != 2 {
		t.Errorf("even count: got %d, want 2 (mean of 2 and 3, truncated)", got)
	}
	if got := median([]int64(nil)); got != 0 {
		t.Errorf("empty: got %d", got)
	}
}

func TestParseProcCgroup(t *testing.T) {
	in := "4:memory:/process_api/abc\n2:cpu,cpuacct:/x\n0::/\n"
	got := parseProcCgroup(bufio.NewScanner(strings.NewReader(in)))
	if got["memory"] != "/process_api/abc" || got["cpuacct"] != "/x" || got["cpu"] != "/x" {
		t.Fatalf("got %v", got)
	}
	if _, ok := got[""]; ok {
		t.Fatalf("the cgroup v2 line must not become a controller: %v", got)
	}
}

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and parentheses, then fields 3..17.
	stat := "42 (my (odd) cmd) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0"
	comm, ticks, ok := parseProcStat(stat)
	if !ok || comm != "my (odd) cmd" || ticks != 13 {
		t.Fatalf("got %q %d %v, want \"my (odd) cmd\" 13 true", comm, ticks, ok)
	}
}

func TestParseProfile(t *testing.T) {
	line := func(ms int, text string) stampedLine {
		return stampedLine{at: time.Duration(ms) * time.Millisecond, text: text}
	}
	lines := []stampedLine{
		line(20, `time="x" level=debug msg="starting BuildKit: rootlesskit buildkitd"`),
		line(300, `time="x" level=debug msg="buildkitd: time=\"x\" level=debug msg=\"session started\""`),
		line(400, `time="x" level=debug msg="#5 [1/3] FROM reg/busybox"`),
		line(410, `time="x" level=debug msg="#5 extracting sha256:0123abcd 0.4s done"`),
		line(420, `time="x" level=debug msg="#5 DONE 0.5s"`),
		line(500, `time="x" level=debug msg="#6 [2/3] RUN echo \"hi\""`),
		line(600, `time="x" level=debug msg="#6 DONE 0.3s"`),
		line(610, `time="x" level=debug msg="#7 [3/3] RUN true"`),
		line(700, `time="x" level=debug msg="#7 DONE 0.2s"`),
		line(710, `time="x" level=debug msg="#8 exporting to oci image format"`),
		line(800, `time="x" level=debug msg="#8 DONE 0.6s"`),
		line(900, `time="x" level=info msg="Pushing image to reg/x:latest"`),
		line(950, `time="x" level=info msg="Pushed reg/x@sha256:00"`),
	}
	p := parseProfile(lines)
	want := Profile{DaemonStart: 20 * time.Millisecond, DaemonReady: 300 * time.Millisecond,
		SolveDone: 900 * time.Millisecond, PushDone: 950 * time.Millisecond,
		Unpack: 400 * time.Millisecond, Run: 500 * time.Millisecond, Export: 600 * time.Millisecond, RunSteps: 2}
	if p != want {
		t.Fatalf("got  %+v\nwant %+v", p, want)
	}
}

func sampleReport() *Report {
	s := func(wall time.Duration, mem int64) Sample {
		return Sample{Wall: wall, CPU: wall / 2, PeakMem: mem, PeakRSS: mem / 2, MemKnown: true,
			Traffic: Traffic{Pulled: 3 << 20, Pushed: 2 << 10}}
	}
	return &Report{
		Runs: 3, Machine: Machine{CPUs: 2, Versions: map[string]string{"Kaniko": "v1.23.2"}},
		Tools: []ToolInfo{{"kiln-rootless", "kiln (rootless)"}, {"kaniko", "Kaniko"}},
		Results: []*Result{
			{Scenario: "small", Tool: "kiln-rootless", Samples: []Sample{s(time.Second, 40<<20), s(2*time.Second, 50<<20), s(3*time.Second, 60<<20)}},
			{Scenario: "small", Tool: "kaniko", Samples: []Sample{s(4*time.Second, 100<<20), s(4*time.Second, 100<<20), s(4*time.Second, 100<<20)}},
			{Scenario: "warm-repo", Tool: "kiln-rootless", Error: "exit status 1: boom | pipe"},
		},
	}
}

func TestRenderResults(t *testing.T) {
	text := renderResults(sampleReport())
	for _, want := range []string{
		"| small | kiln-rootless | 3 | 2.00 (1.00–3.00) | 1.00 | 50 MiB | 25 MiB | 3.0 MiB | 2 KiB | 0.50 | 0.50 | 0.50 |",
		"| small | kaniko | 3 | 4.00 (4.00–4.00) |",
		`failed: exit status 1: boom \| pipe`,
		"| target | kiln-rootless |",
		"| every scenario's wall ÷ Kaniko ≤ 1.0 | 1 of 1: **met** |",
		"| warm-repo-large wall ÷ Kaniko ≤ 0.1 | not measured |",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
}

// TestRegistryCountsTraffic pushes and pulls an image through the bench's
// registry: the counters must see at least the layer's bytes each way.
func TestRegistryCountsTraffic(t *testing.T) {
	reg, err := startRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	img, err := random.Image(1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	size, _ := layers[0].Size()
	before := reg.traffic.now()
	if err := reg.push("t/img:1", img); err != nil {
		t.Fatal(err)
	}
	pushed := reg.traffic.now()
	if got := pushed.Pushed - before.Pushed; got < size {
		t.Fatalf("pushed %d bytes, below the layer's %d", got, size)
	}
	ref, _ := name.ParseReference(reg.Host+"/t/img:1", name.Insecure)
	pulledImg, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	pulledLayers, _ := pulledImg.Layers()
	rc, err := pulledLayers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
	after := reg.traffic.now()
	if got := after.Pulled - pushed.Pulled; got < size {
		t.Fatalf("pulled %d bytes, below the layer's %d", got, size)
	}
	if after.Pushed != pushed.Pushed {
		t.Fatalf("a pull counted %d pushed bytes", after.Pushed-pushed.Pushed)
	}
}

func TestUpdateResultsMarkdownKeepsHandWrittenText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	hand := "# Title\n\nhand-written intro\n\n" + generatedBegin + "\nold numbers\n" + generatedEnd + "\n\n## Analysis\nkept\n"
	if err := os.WriteFile(path, []byte(hand), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := updateResultsMarkdown(path, sampleReport()); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	text := string(got)
	if strings.Contains(text, "old numbers") || !strings.Contains(text, "hand-written intro") ||
		!strings.HasSuffix(text, "\n## Analysis\nkept\n") || !strings.Contains(text, "| small | kaniko |") {
		t.Fatalf("generated part not replaced in place:\n%s", text)
	}
}

func TestWriteChart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chart.png")
	if err := writeChart(path, sampleReport()); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("chart is not a PNG: %v", err)
	}
	// kiln-rootless' wall bar is half of Kaniko's: 0.5/4 of the panel.
	want := toolColors["kiln-rootless"]
	x, y := chartLabelW+chartPanelW/16, chartTop+chartBarH/2
	if r, g, b, _ := img.At(x, y).RGBA(); uint8(r>>8) != want.R || uint8(g>>8) != want.G || uint8(b>>8) != want.B {
		t.Fatalf("pixel (%d,%d) is not kiln-rootless' bar colour", x, y)
	}
	if r, _, _, _ := img.At(chartLabelW+chartPanelW/4, y).RGBA(); uint8(r>>8) == want.R {
		t.Fatalf("kiln-rootless' bar runs past its ratio of 0.5")
	}
}

// TestMeasureCountsTheWholeTree runs a shell whose child burns CPU and
// memory: both must show in the run's cgroups.
func TestMeasureCountsTheWholeTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatalf("measuring needs root to create cgroups (euid %d): run the suite as root", os.Geteuid())
	}
	parents, err := newCgroupParents()
	if err != nil {
		t.Fatal(err)
	}
	defer parents.remove()
	run, err := parents.newRun("test")
	if err != nil {
		t.Fatal(err)
	}
	sample, err := run.measure(func() error {
		// 64 MiB held in a shell variable by a grandchild, plus CPU.
		return runCommand(exec.Command("sh", "-c", `x=$(head -c 67108864 /dev/zero | tr "\0" a); head -c 200000000 /dev/zero | md5sum >/dev/null; echo ${#x}`), io.Discard)
	})
	if err := errors.Join(err, run.remove()); err != nil {
		t.Fatal(err)
	}
	if sample.CPU < 100*time.Millisecond || sample.CPU > 10*sample.Wall+time.Second {
		t.Errorf("CPU %v implausible for the child's work (wall %v)", sample.CPU, sample.Wall)
	}
	if sample.PeakMem < 64<<20 {
		t.Errorf("peak memory %d below the 64 MiB the grandchild held", sample.PeakMem)
	}
}
