package runner

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/conformance/corpus"
	"github.com/kilnbuild/kiln/internal/testenv"
)

// Settings of TestConformance (make conformance).
const (
	modesEnv    = "KILN_CONFORMANCE_MODES"    // root,rootless,plain,embedded (default all)
	parallelEnv = "KILN_CONFORMANCE_PARALLEL" // concurrent kiln builds (default 2)
	casesEnv    = "KILN_CONFORMANCE_CASES"    // comma-separated subset (plus what they require)
	reportEnv   = "KILN_CONFORMANCE_REPORT"   // where to write the report; default ../REPORT.md for full runs
	logsEnv     = "KILN_CONFORMANCE_LOGS"     // directory for kiln's output per case and mode
	fullEnv     = "KILN_CONFORMANCE_FULL"     // 1: also the extended cases (make conformance)
)

const (
	casesDir  = "../cases"
	goldenDir = "../golden"
)

// TestConformance builds the corpus with kiln and fails when any case drops
// below the level its case.yaml records. A full run in every mode rewrites
// conformance/REPORT.md.
func TestConformance(t *testing.T) {
	testenv.RequireRoot(t)
	bins := testenv.Binaries(t)
	modes, err := ParseModes(envOr(modesEnv, modeList(AllModes)))
	if err != nil {
		t.Fatalf("%s: %v", modesEnv, err)
	}
	parallel, err := strconv.Atoi(envOr(parallelEnv, "2"))
	if err != nil || parallel < 1 {
		t.Fatalf("%s=%q: want a positive number of concurrent builds", parallelEnv, os.Getenv(parallelEnv))
	}
	all, err := corpus.Load(casesDir)
	if err != nil {
		t.Fatal(err)
	}
	cases, err := corpus.Order(all)
	if err != nil {
		t.Fatal(err)
	}
	subset := os.Getenv(casesEnv)
	full := os.Getenv(fullEnv) == "1"
	switch {
	case subset != "":
		if cases, err = corpus.Closure(all, strings.Split(subset, ",")); err != nil {
			t.Fatalf("%s: %v", casesEnv, err)
		}
	case !full:
		if cases, err = corpus.WithoutExtended(all); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d of %d cases; %s=1 (make conformance) builds the extended ones too", len(cases), len(all), fullEnv)
	}
	cfg := Config{
		Executor:   bins.Executor,
		Cases:      cases,
		GoldenDir:  goldenDir,
		Modes:      modes,
		Parallel:   parallel,
		ScratchDir: testenv.ReadableTempDir(t),
		LogDir:     os.Getenv(logsEnv),
		Logf:       t.Logf,
	}
	if slices.Contains(modes, Embedded) {
		cfg.Image = testenv.LoadImage(t, "kiln.tar")
	}
	if slices.Contains(modes, Rootless) {
		u := testenv.NonRootUser(t)
		cfg.User = &u
	}
	start := time.Now()
	results, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d cases × %d modes in %s, %d builds at a time\n%s", len(cases), len(modes), time.Since(start).Round(time.Second), parallel, Scoreboard(results))

	reportPath := os.Getenv(reportEnv)
	if reportPath == "" && subset == "" && full && len(modes) == len(AllModes) {
		reportPath = filepath.Join("..", "REPORT.md")
	}
	if reportPath != "" {
		if err := os.WriteFile(reportPath, []byte(Report(results)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", reportPath)
	}
	for _, r := range results {
		switch r.Status {
		case Improved:
			hint := ""
			if r.Mode == Plain {
				hint = ", or kiln.plain when only this mode improved"
			}
			t.Logf("%s (%s) now reaches %s, above its recorded %s: raise kiln.level (or kiln.holds) in its case.yaml%s", r.Case.Name, r.Mode, levelsText(r.Comparison), expectationText(r.Expected), hint)
		case Stale:
			t.Logf("GOLDEN STALE for %s (%s): %s — regenerate with make golden; not counted as kiln's result", r.Case.Name, r.Mode, strings.Join(r.Notes, "; "))
		}
	}
	for _, r := range Failed(results) {
		t.Errorf("%s (%s): %s\n%s", r.Case.Name, r.Mode, r.Status, differenceText(r))
	}
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
