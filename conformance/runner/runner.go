// Package runner builds the conformance corpus with kiln, as root and as a
// non-root user (rootless BuildKit), and measures each image against Kaniko's
// golden at five levels: L0 outcome, L1 config, L2 flattened filesystem, L3
// per-layer entries, L4 image digest. A third mode builds without
// --reproducible and is judged up to L3 with times ignored.
package runner

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kilnbuild/kiln/conformance/corpus"
	"github.com/kilnbuild/kiln/conformance/golden"
	"github.com/kilnbuild/kiln/internal/testenv"
)

// Mode is how kiln runs: as root (rootful BuildKit) or as a non-root user
// (rootless BuildKit through rootlesskit), with --reproducible like the
// goldens; or as root without it.
type Mode string

// Modes.
const (
	Root     Mode = "root"
	Rootless Mode = "rootless"
	// Plain builds without --reproducible, as root: judged up to
	// corpus.PlainTop with times ignored (see ComparePlain).
	Plain Mode = "plain"
	// Embedded runs kiln's image as root in a Docker container with no
	// security options (Kaniko's model): BuildKit embedded, RUN in the
	// container's root. Judged like Root.
	Embedded Mode = "embedded"
)

// AllModes are the modes a full run covers, in report order.
var AllModes = []Mode{Root, Rootless, Plain, Embedded}

// TopLevel is the highest level judged in the mode.
func (m Mode) TopLevel() int {
	if m == Plain {
		return corpus.PlainTop
	}
	return corpus.LevelDigest
}

// expectation is what the case records for the mode.
func (m Mode) expectation(k corpus.KilnExpect) corpus.Expectation {
	if m == Plain {
		return k.ForPlain()
	}
	return k.For(m == Rootless)
}

// ParseModes reads a comma-separated list of modes.
func ParseModes(s string) ([]Mode, error) {
	var modes []Mode
	for _, m := range strings.Split(s, ",") {
		mode := Mode(strings.TrimSpace(m))
		if !slices.Contains(AllModes, mode) {
			return nil, fmt.Errorf("mode %q must be one of %s", m, modeList(AllModes))
		}
		if !slices.Contains(modes, mode) {
			modes = append(modes, mode)
		}
	}
	return modes, nil
}

func modeList(modes []Mode) string {
	names := make([]string, len(modes))
	for i, m := range modes {
		names[i] = string(m)
	}
	return strings.Join(names, ",")
}

// Config is one conformance run.
type Config struct {
	// Executor is kiln's executor binary (buildkitd and rootlesskit next to it).
	Executor string
	// Image is kiln's executor image in the Docker engine; required when
	// Modes has Embedded (the Executor binary replaces the image's).
	Image string
	// Cases in dependency order (corpus.Order or corpus.Closure).
	Cases     []*corpus.Case
	GoldenDir string
	Modes     []Mode
	// User runs the rootless mode; required when Modes has Rootless.
	User *testenv.User
	// Parallel is how many kiln builds (each with its own daemon) run at once.
	Parallel int
	// ScratchDir holds contexts; it must be traversable by User.
	ScratchDir string
	// LogDir, when set, receives <case>.<mode>.log with kiln's output.
	LogDir string
	// Logf receives one line per finished case.
	Logf func(format string, args ...any)
}

// Status is how a case's result is judged.
type Status string

// Statuses. Only Regressed and Error fail a run.
const (
	// AsExpected: kiln reached exactly the recorded level.
	AsExpected Status = "as expected"
	// Improved: kiln exceeds the recorded level; raise it in case.yaml.
	Improved Status = "improved"
	// Regressed: kiln dropped below the recorded level.
	Regressed Status = "REGRESSED"
	// Nondeterministic: Kaniko itself was not reproducible (network, date);
	// the comparison is reported, not judged.
	Nondeterministic Status = "not judged: kaniko nondeterministic"
	// Stale: the golden was made from other base images; not judged.
	Stale Status = "not judged: golden stale"
	// Error: the harness could not build or inspect the case.
	Error Status = "ERROR"
)

// Result is one case in one mode.
type Result struct {
	Case       *corpus.Case
	Mode       Mode
	Build      *Build
	Comparison Comparison
	Expected   corpus.Expectation
	Status     Status
	// Notes explain what limits the comparison (stale bases, prerequisites).
	Notes []string
	Err   error
}

// Judged reports whether the result counts for the scoreboard's regressions.
func (r *Result) Judged() bool {
	return r.Status != Nondeterministic && r.Status != Stale && r.Status != Error
}

// Run builds every case in every mode and compares it with its golden.
// Harness failures are returned as results with Status Error.
func Run(ctx context.Context, cfg Config) ([]*Result, error) {
	if cfg.Parallel < 1 {
		cfg.Parallel = 1
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	goldens := map[string]*golden.Golden{}
	for _, c := range cfg.Cases {
		g, err := golden.Read(cfg.GoldenDir, c.Name)
		if err != nil {
			return nil, err
		}
		goldens[c.Name] = g
	}
	builders := map[Mode]*builder{}
	for _, mode := range cfg.Modes {
		b, err := newBuilder(cfg, mode)
		if err != nil {
			return nil, err
		}
		defer b.harness.Close()
		builders[mode] = b
	}

	type job struct {
		result *Result
		done   chan struct{}
	}
	var jobs []*job
	byKey := map[string]*job{}
	for _, mode := range cfg.Modes {
		for _, c := range cfg.Cases {
			j := &job{result: &Result{Case: c, Mode: mode, Expected: mode.expectation(c.Kiln)}, done: make(chan struct{})}
			jobs = append(jobs, j)
			byKey[string(mode)+"/"+c.Name] = j
		}
	}
	queue := make(chan *job)
	var wg sync.WaitGroup
	for range cfg.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range queue {
				r := j.result
				var prereqs []*Result
				for _, name := range r.Case.Requires {
					if dep := byKey[string(r.Mode)+"/"+name]; dep != nil {
						<-dep.done // queued earlier: cases are in dependency order
						prereqs = append(prereqs, dep.result)
					}
				}
				runOne(ctx, builders[r.Mode], goldens[r.Case.Name], r, prereqs)
				close(j.done)
				cfg.Logf("%-9s %-32s %-6s expected %-4s %s %s", r.Mode, r.Case.Name, levelText(r), corpus.LevelName(r.Expected.Level), r.Status, durationText(r))
			}
		}()
	}
	for _, j := range jobs {
		select {
		case queue <- j:
		case <-ctx.Done():
		}
	}
	close(queue)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	results := make([]*Result, len(jobs))
	for i, j := range jobs {
		results[i] = j.result
	}
	return results, nil
}

func newBuilder(cfg Config, mode Mode) (*builder, error) {
	b := &builder{executor: cfg.Executor, scratch: cfg.ScratchDir, logDir: cfg.LogDir, mode: mode, image: cfg.Image}
	if mode == Embedded && cfg.Image == "" {
		return nil, fmt.Errorf("the embedded mode needs kiln's image (testenv.LoadImage)")
	}
	if mode == Rootless {
		if cfg.User == nil {
			return nil, fmt.Errorf("the rootless mode needs a non-root user (testenv.NonRootUser)")
		}
		b.user = cfg.User
	}
	h, err := golden.StartServers(golden.HarnessOptions{Debian: corpus.NeedsBase(cfg.Cases, "debian"), Cases: cfg.Cases, Logf: cfg.Logf})
	if err != nil {
		return nil, fmt.Errorf("%s harness: %w", mode, err)
	}
	b.harness = h
	if mode == Plain {
		if b.baseHistories, err = baseHistories(h); err != nil {
			h.Close()
			return nil, err
		}
	}
	return b, nil
}

// runOne builds one case and fills in its comparison and status.
func runOne(ctx context.Context, b *builder, g *golden.Golden, r *Result, prereqs []*Result) {
	for _, p := range prereqs {
		if p.Status == Error || p.Build == nil || p.Build.Outcome.Result != corpus.OutcomeBuilt {
			r.Status, r.Err = Error, fmt.Errorf("prerequisite %s was not built in this mode", p.Case.Name)
			return
		}
		if p.Comparison.Level < p.Mode.TopLevel() {
			r.Notes = append(r.Notes, fmt.Sprintf("built FROM cases/%s, whose kiln image differs from Kaniko's (%s): differences inherited from it are not this case's own", p.Case.Name, corpus.LevelName(p.Comparison.Level)))
		}
	}
	build, err := b.build(ctx, r.Case)
	if err != nil {
		r.Status, r.Err = Error, err
		return
	}
	r.Build = build
	if b.mode == Plain {
		r.Comparison = ComparePlain(g, build.Outcome, build.Image, b.baseHistories)
	} else {
		r.Comparison = Compare(g, build.Outcome, build.Image)
	}
	placehold(&r.Comparison, b.harness.Placeholders(r.Case))
	stale := golden.StaleBases(g, b.harness.CaseBases(r.Case))
	for _, s := range stale {
		r.Notes = append(r.Notes, "golden stale: "+s)
	}
	switch {
	case len(stale) > 0:
		r.Status = Stale
	case !g.Deterministic:
		r.Status = Nondeterministic
		r.Notes = append(r.Notes, "Kaniko's own two runs differed: "+strings.Join(g.Differences, "; "))
	default:
		r.Status = judge(r.Comparison, r.Expected)
	}
}

// placehold replaces harness addresses in diffs (kiln records the expanded
// HTTP_BASE in history), so the report does not change from run to run.
func placehold(c *Comparison, replace map[string]string) {
	for l := range c.Diffs {
		for i, d := range c.Diffs[l] {
			c.Diffs[l][i] = golden.Placehold(d, replace)
		}
	}
}

// judge compares the levels reached with the recorded expectation.
func judge(c Comparison, want corpus.Expectation) Status {
	if c.Level < want.Level {
		return Regressed
	}
	for _, l := range want.Holds {
		if !c.Pass[l] {
			return Regressed
		}
	}
	if c.Level > want.Level {
		return Improved
	}
	for l := c.Level + 1; l < LevelCount; l++ {
		if c.Pass[l] && !slices.Contains(want.Holds, l) {
			return Improved
		}
	}
	return AsExpected
}

func levelText(r *Result) string {
	if r.Status == Error {
		return "-"
	}
	return corpus.LevelName(r.Comparison.Level)
}

func durationText(r *Result) string {
	if r.Err != nil {
		return r.Err.Error()
	}
	if r.Build == nil {
		return ""
	}
	return "(" + r.Build.Duration.Round(100*time.Millisecond).String() + ")"
}
