// Command bench compares kiln with Kaniko v1.23.2 (and docker build when an
// engine answers) on this machine: interleaved runs, medians and ratios of
// wall time, CPU and peak memory of each build's whole process tree,
// measured with a fresh cgroup v1 pair per run. It writes RESULTS.md (only
// the generated section), results.json and chart.png.
//
//	go run ./bench -scenarios small,apt -runs 5
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kilnbuild/kiln/conformance/kaniko"
	"github.com/kilnbuild/kiln/internal/testenv"
)

// Result is every sample of one tool on one scenario.
type Result struct {
	Scenario string
	Tool     string
	Samples  []Sample
	// Skipped says why the tool did not run the scenario.
	Skipped string
	// Error is the first failure; later rounds are skipped after one.
	Error string
}

// Report is what results.json holds and RESULTS.md is made from.
type Report struct {
	Started  time.Time
	Duration time.Duration
	Runs     int
	Warmup   int
	Machine  Machine
	Tools    []ToolInfo
	Results  []*Result
	Profiles []Profile `json:",omitempty"`
}

type ToolInfo struct{ Name, Label string }

func main() {
	var (
		scenarioList = flag.String("scenarios", allScenarioNames(), "comma-separated scenarios to run")
		toolList     = flag.String("tools", "kiln-rootless,kiln-root,kiln-embedded,kaniko,docker", "comma-separated tools, in interleaving order")
		runs         = flag.Int("runs", 5, "counted runs per tool and scenario")
		warmup       = flag.Int("warmup", 1, "discarded warm-up runs before the counted ones")
		outDir       = flag.String("out", "bench", "directory for RESULTS.md, results.json and chart.png")
		binDir       = flag.String("bin", "bin", "directory with kiln's executor, kiln-runc, buildkitd and rootlesskit (make build)")
		scratchDir   = flag.String("scratch", os.TempDir(), "where contexts, registry blobs and build roots go (not on overlayfs)")
		scratchFS    = flag.String("scratch-fs", scratchJournaled, scratchJournaled+": in an ext4 filesystem with a journal, made in a sparse file under -scratch and loop-mounted, as a node's disk is; "+scratchHere+": in -scratch as it is")
		logDir       = flag.String("logs", "", "keep every build's output here (default: discarded)")
		timeout      = flag.Duration("timeout", 15*time.Minute, "limit for one build")
		profile      = flag.String("profile", "small,manyfiles", "scenarios to profile kiln's phases on after the benchmark (empty: none)")
		render       = flag.String("render", "", "only re-render RESULTS.md and chart.png into -out from this results.json")
	)
	flag.Parse()
	log.SetFlags(log.Ltime)
	if *render != "" {
		if err := rerender(*render, *outDir); err != nil {
			log.Fatalf("bench: %v", err)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, options{
		scenarios: splitList(*scenarioList), tools: splitList(*toolList), runs: *runs, warmup: *warmup,
		outDir: *outDir, binDir: *binDir, scratch: *scratchDir, scratchFS: *scratchFS, logDir: *logDir, timeout: *timeout,
		profile: splitList(*profile),
	}); err != nil {
		log.Fatalf("bench: %v", err)
	}
}

type options struct {
	scenarios, tools, profile []string
	runs, warmup              int
	outDir, binDir, scratch   string
	scratchFS, logDir         string
	timeout                   time.Duration
}

func allScenarioNames() string {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.Name)
	}
	return strings.Join(names, ",")
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func run(ctx context.Context, opts options) error {
	if os.Geteuid() != 0 {
		return errors.New("the bench needs root (cgroups, Kaniko's namespaces, the rootless test user): run `sudo make bench`")
	}
	if opts.runs < 1 || opts.warmup < 0 {
		return errors.New("-runs must be at least 1 and -warmup at least 0")
	}
	selected, err := scenariosNamed("-scenarios", opts.scenarios)
	if err != nil {
		return err
	}
	profiled, err := scenariosNamed("-profile", opts.profile)
	if err != nil {
		return err
	}
	parent, unmount, err := scratchParent(opts.scratchFS, opts.scratch)
	if err != nil {
		return err
	}
	defer unmount()
	scratch, err := os.MkdirTemp(parent, "kiln-bench-")
	if err != nil {
		return err
	}
	defer removeScratch(scratch)
	// Every tool, the rootless user included, reads contexts and binaries here.
	if err := os.Chmod(scratch, 0o755); err != nil {
		return err
	}
	tb := &testenv.ProgramTB{Label: "bench"}
	defer tb.Close()
	tools, err := makeTools(ctx, opts.tools, scratch, opts.binDir, tb)
	if err != nil {
		return err
	}
	reg, err := startRegistry(filepath.Join(scratch, "registry"))
	if err != nil {
		return err
	}
	defer reg.Close()
	log.Printf("seeding base images into %s", reg.Host)
	if err := seedBases(reg, tb, append(selected, profiled...)); err != nil {
		return err
	}
	cgroups, err := newCgroupParents()
	if err != nil {
		return err
	}
	defer cgroups.remove()

	b := &bench{opts: opts, reg: reg, scratch: scratch, cgroups: cgroups, tools: tools}
	report := &Report{Started: time.Now(), Runs: opts.runs, Warmup: opts.warmup, Machine: describeMachine(scratch, opts.binDir)}
	if opts.scratchFS == scratchJournaled {
		report.Machine.Disk = "ext4 with a journal, loop-mounted from a sparse file on " + mountOf(opts.scratch)
	}
	for _, t := range tools {
		report.Tools = append(report.Tools, ToolInfo{t.Name, t.Label})
	}
	for _, s := range profiled {
		profiles, err := b.profile(ctx, s)
		if err != nil {
			return err
		}
		report.Profiles = append(report.Profiles, profiles...)
	}
	// Outputs are rewritten after every scenario, so an interrupted run
	// still leaves what it measured.
	for _, s := range selected {
		results, err := b.scenario(ctx, s)
		report.Results = append(report.Results, results...)
		report.Duration = time.Since(report.Started)
		if werr := writeOutputs(opts.outDir, report); werr != nil {
			return werr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// scenariosNamed looks up the scenarios flag names.
func scenariosNamed(flag string, names []string) ([]*Scenario, error) {
	var out []*Scenario
	for _, n := range names {
		s := scenarioByName(n)
		if s == nil {
			return nil, fmt.Errorf("%s: unknown scenario %q (known: %s)", flag, n, allScenarioNames())
		}
		out = append(out, s)
	}
	return out, nil
}

func makeTools(ctx context.Context, names []string, scratch, binDir string, tb *testenv.ProgramTB) ([]*Tool, error) {
	var tools []*Tool
	var executor string
	kilnExecutor := func() (string, error) {
		if executor != "" {
			return executor, nil
		}
		var err error
		executor, err = privateBinaries(binDir, filepath.Join(scratch, "bin"))
		return executor, err
	}
	// Without a writable /kaniko, kiln keeps its BuildKit state and work
	// dirs in TMPDIR: here on the scratch filesystem, as in a pod they are
	// on the node's disk, beside Kaniko's root.
	tmp := filepath.Join(scratch, "tmp")
	if err := os.Mkdir(tmp, 0o1777); err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o1777); err != nil { // past the umask
		return nil, err
	}
	for _, n := range names {
		switch n {
		case "kiln-root":
			exe, err := kilnExecutor()
			if err != nil {
				return nil, err
			}
			home := filepath.Join(scratch, "root-home")
			if err := os.MkdirAll(home, 0o700); err != nil {
				return nil, err
			}
			tools = append(tools, kilnRoot(exe, home, tmp))
		case "kiln-rootless":
			exe, err := kilnExecutor()
			if err != nil {
				return nil, err
			}
			user, err := testenv.Catch(func() testenv.User { return testenv.NonRootUser(tb) })
			if err != nil {
				return nil, err
			}
			tools = append(tools, kilnRootless(exe, user, tmp))
		case "kiln-embedded":
			exe, err := kilnExecutor()
			if err != nil {
				return nil, err
			}
			tools = append(tools, kilnEmbeddedTool(exe, scratch))
		case "kaniko":
			log.Printf("building Kaniko %s (cached after the first time)", kaniko.Version)
			exe, err := kaniko.EnsureExecutor(ctx, "")
			if err != nil {
				return nil, err
			}
			tools = append(tools, kanikoTool(exe, scratch))
		case "docker":
			builder, err := dockerBuilder()
			if err != nil {
				log.Printf("docker: %v; leaving docker build out", err)
				continue
			}
			tools = append(tools, dockerTool(builder))
		default:
			return nil, fmt.Errorf("-tools: unknown tool %q (known: kiln-rootless, kiln-root, kiln-embedded, kaniko, docker)", n)
		}
	}
	if len(tools) == 0 {
		return nil, errors.New("-tools: nothing to run")
	}
	return tools, nil
}

type bench struct {
	opts    options
	reg     *Registry
	scratch string
	cgroups *cgroupParents
	tools   []*Tool
}

// scenario runs warm-up and counted rounds, each round running every tool
// once in order (A B C A B C), so drift on a shared machine spreads evenly.
func (b *bench) scenario(ctx context.Context, s *Scenario) ([]*Result, error) {
	log.Printf("== %s: %s (%s)", s.Name, s.Title, s.Kind)
	results := map[string]*Result{}
	var ordered []*Result
	for _, t := range b.tools {
		r := &Result{Scenario: s.Name, Tool: t.Name, Skipped: t.Unsupported(s)}
		results[t.Name] = r
		ordered = append(ordered, r)
		if r.Skipped != "" {
			log.Printf("%s: skipped: %s", t.Name, r.Skipped)
			continue
		}
		if s.Kind != Cold {
			// The unmeasured build that fills the cache the rounds reuse.
			if _, err := b.build(ctx, s, t, 0, "prime"); err != nil {
				r.Error = "priming the cache: " + err.Error()
				log.Printf("%s: %s", t.Name, r.Error)
			}
		}
	}
	for round := 1; round <= b.opts.warmup+b.opts.runs; round++ {
		counted := round > b.opts.warmup
		for _, t := range b.tools {
			r := results[t.Name]
			if r.Skipped != "" || r.Error != "" {
				continue
			}
			sample, err := b.build(ctx, s, t, round, map[bool]string{true: "run", false: "warm-up"}[counted])
			if ctx.Err() != nil {
				return ordered, ctx.Err()
			}
			if err != nil {
				r.Error = err.Error()
				log.Printf("%s: FAILED: %s", t.Name, r.Error)
				continue
			}
			if counted {
				r.Samples = append(r.Samples, sample)
			}
		}
	}
	for _, t := range b.tools {
		if s.Kind != Cold {
			t.After(&Build{Scenario: s, Registry: b.reg.Host, Dest: b.dest(s, t)}, true)
		}
	}
	return ordered, nil
}

func (b *bench) dest(s *Scenario, t *Tool) string {
	return fmt.Sprintf("%s/bench/%s-%s:latest", b.reg.Host, s.Name, t.Name)
}

// build runs one measured build of s by t; rev is the changed source line.
func (b *bench) build(ctx context.Context, s *Scenario, t *Tool, rev int, phase string) (Sample, error) {
	return b.buildTo(ctx, s, t, rev, phase, nil)
}

// buildTo is build with the output also copied to extraLog and extraArgs
// added to the executor's arguments.
func (b *bench) buildTo(ctx context.Context, s *Scenario, t *Tool, rev int, phase string, extraLog io.Writer, extraArgs ...string) (Sample, error) {
	id := fmt.Sprintf("%s-%s-%d-%s", s.Name, t.Name, rev, phase)
	contextDir := filepath.Join(b.scratch, "contexts", id)
	if err := s.writeContext(contextDir, rev); err != nil {
		return Sample{}, err
	}
	defer os.RemoveAll(contextDir)
	cacheDir := filepath.Join(b.scratch, "cache-dirs", s.Name+"-"+t.Name)
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return Sample{}, err
	}
	if err := t.PrepareCacheDir(cacheDir); err != nil {
		return Sample{}, err
	}
	logw, closeLog, err := b.buildLog(id)
	if err != nil {
		return Sample{}, err
	}
	defer closeLog()
	if extraLog != nil {
		logw = io.MultiWriter(logw, extraLog)
	}
	build := &Build{
		Scenario: s, Registry: b.reg.Host, ContextDir: contextDir, Dest: b.dest(s, t),
		CacheRepo: fmt.Sprintf("%s/bench/cache/%s-%s", b.reg.Host, s.Name, t.Name),
		CacheDir:  cacheDir, ExtraArgs: extraArgs, Log: logw,
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.timeout)
	defer cancel()
	cg, err := b.cgroups.newRun(id)
	if err != nil {
		return Sample{}, err
	}
	var extraBefore time.Duration
	if t.ExtraCPU != nil {
		extraBefore, _ = t.ExtraCPU()
	}
	trafficBefore := b.reg.traffic.now()
	sample, err := cg.measure(t.Start(ctx, build))
	trafficAfter := b.reg.traffic.now()
	for _, work := range build.untimed {
		work()
	}
	sample.Traffic = Traffic{Pulled: trafficAfter.Pulled - trafficBefore.Pulled, Pushed: trafficAfter.Pushed - trafficBefore.Pushed}
	if t.ExtraCPU != nil {
		if after, cerr := t.ExtraCPU(); cerr == nil {
			sample.CPU += after - extraBefore
		}
	}
	sample.MemKnown = t.MemKnown
	sample.Load1 = loadAverage()
	err = errors.Join(err, cg.remove())
	t.After(build, s.Kind == Cold)
	if err == nil {
		log.Printf("%-13s %-8s %2d  wall %6.2fs  cpu %6.2fs  mem %s  rss %s  pulled %s  pushed %s  load %.1f", t.Name, phase, rev,
			sample.Wall.Seconds(), sample.CPU.Seconds(), mib(sample.PeakMem), mib(sample.PeakRSS),
			mib(sample.Traffic.Pulled), mib(sample.Traffic.Pushed), sample.Load1)
	}
	return sample, err
}

func (b *bench) buildLog(id string) (io.Writer, func(), error) {
	if b.opts.logDir == "" {
		return io.Discard, func() {}, nil
	}
	if err := os.MkdirAll(b.opts.logDir, 0o755); err != nil {
		return nil, nil, err
	}
	f, err := os.Create(filepath.Join(b.opts.logDir, id+".log"))
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

func mib(n int64) string { return fmt.Sprintf("%5.0f MiB", float64(n)/(1<<20)) }

// removeScratch deletes the scratch tree; rootless layers inside belong to
// subordinate IDs but root can delete them.
func removeScratch(dir string) {
	if err := os.RemoveAll(dir); err != nil {
		log.Printf("bench: leaving %s: %v", dir, err)
	}
}

func writeOutputs(dir string, report *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	if err := writeChart(filepath.Join(dir, "chart.png"), report); err != nil {
		return err
	}
	return updateResultsMarkdown(filepath.Join(dir, "RESULTS.md"), report)
}

func rerender(resultsFile, dir string) error {
	data, err := os.ReadFile(resultsFile)
	if err != nil {
		return err
	}
	var report Report
	if err := json.Unmarshal(data, &report); err != nil {
		return fmt.Errorf("%s: %w", resultsFile, err)
	}
	if err := writeChart(filepath.Join(dir, "chart.png"), &report); err != nil {
		return err
	}
	return updateResultsMarkdown(filepath.Join(dir, "RESULTS.md"), &report)
}
