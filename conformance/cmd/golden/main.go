// Command golden runs Kaniko's reference executor on the conformance corpus
// (twice per case, to detect Kaniko's own nondeterminism) and writes
// conformance/golden/<case>.json. It needs root: Kaniko runs in private
// namespaces chrooted into throwaway directories.
//
//	go run ./conformance/cmd/golden [-cases name,name] [-runs 2]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/kilnbuild/kiln/conformance/corpus"
	"github.com/kilnbuild/kiln/conformance/golden"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "golden:", err)
		os.Exit(1)
	}
}

func run() error {
	casesDir := flag.String("corpus", "conformance/cases", "corpus directory")
	outDir := flag.String("out", "conformance/golden", "directory for the golden files")
	only := flag.String("cases", "", "comma-separated case names (plus what they require); default all")
	runs := flag.Int("runs", 2, "Kaniko runs per case; more than one detects nondeterminism")
	cacheDir := flag.String("cache", "", "cache for the Kaniko binary (default: user cache dir)")
	logDir := flag.String("logs", "", "directory for Kaniko's output per case and run")
	flag.Parse()

	all, err := corpus.Load(*casesDir)
	if err != nil {
		return err
	}
	cases, err := corpus.Order(all)
	if err != nil {
		return err
	}
	if *only != "" {
		if cases, err = corpus.Closure(all, strings.Split(*only, ",")); err != nil {
			return fmt.Errorf("-cases: %w", err)
		}
	}
	if *logDir != "" {
		if err := os.MkdirAll(*logDir, 0o755); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	start := time.Now()
	h, err := golden.NewHarness(ctx, golden.HarnessOptions{
		CacheDir: *cacheDir, Debian: corpus.NeedsBase(cases, "debian"), Cases: cases,
		Logf: func(format string, a ...any) { fmt.Printf(format+"\n", a...) },
	})
	if err != nil {
		return err
	}
	defer h.Close()
	h.LogDir = *logDir
	fmt.Printf("harness ready in %s (registry %s)\n", time.Since(start).Round(time.Second), h.Registry.Host)

	var problems []string
	for _, c := range cases {
		g, took, err := h.Generate(ctx, c, *runs)
		if err != nil {
			return err
		}
		if err := golden.Write(*outDir, g); err != nil {
			return err
		}
		status := g.Outcome.Result
		if g.Outcome.Class != "" {
			status += " (" + g.Outcome.Class + ")"
		}
		if !g.Deterministic {
			status += " NONDETERMINISTIC: " + strings.Join(g.Differences, "; ")
			problems = append(problems, c.Name+": nondeterministic")
		}
		fmt.Printf("%-32s %-8s %s\n", c.Name, took.Round(100*time.Millisecond), status)
		if err := golden.CheckExpectation(c, g); err != nil {
			fmt.Println("  ", err)
			problems = append(problems, err.Error())
		}
	}
	fmt.Printf("%d cases in %s\n", len(cases), time.Since(start).Round(time.Second))
	if len(problems) > 0 {
		fmt.Println("attention:")
		for _, p := range problems {
			fmt.Println("  ", p)
		}
	}
	return nil
}
