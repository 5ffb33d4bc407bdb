package golden

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kilnbuild/kiln/conformance/corpus"
	"github.com/kilnbuild/kiln/conformance/inspect"
	"github.com/kilnbuild/kiln/conformance/internal/bases"
	"github.com/kilnbuild/kiln/conformance/kaniko"
	"github.com/kilnbuild/kiln/internal/testenv"
)

// MaxListedEntries keeps goldens compact: bigger layers (base layers, the
// many-files case) keep only their entry count and digest.
const MaxListedEntries = 200

// Harness is everything a corpus build needs: a loopback registry with the
// base images, a loopback HTTP server for ADD <url>, and the Kaniko binary.
type Harness struct {
	Executor string
	Registry *testenv.Registry
	HTTPBase string // http://127.0.0.1:<port>; case files live under /<case>/
	// BaseDigests are the base images seeded into Registry.
	BaseDigests bases.Digests
	// ScratchDir holds temporary roots and contexts; default os.TempDir().
	ScratchDir string
	// LogDir, when set, receives <case>.<run>.log with Kaniko's output.
	LogDir string

	httpServer *http.Server
}

// HarnessOptions configure NewHarness.
type HarnessOptions struct {
	// CacheDir keeps the Kaniko binary (the Debian image is cached by testenv).
	CacheDir string
	// Debian seeds library/debian:bookworm (debootstrap, minutes when cold).
	Debian bool
	// Logf receives progress lines (e.g. while debootstrap runs).
	Logf func(string, ...any)
	// Cases whose serve/ files the HTTP server exposes.
	Cases []*corpus.Case
}

// NewHarness builds (or reuses) Kaniko, starts the servers and seeds bases.
func NewHarness(ctx context.Context, opts HarnessOptions) (*Harness, error) {
	if err := kaniko.CheckHost(); err != nil {
		return nil, err
	}
	if opts.CacheDir == "" {
		opts.CacheDir = kaniko.DefaultCacheDir()
	}
	exe, err := kaniko.EnsureExecutor(ctx, opts.CacheDir)
	if err != nil {
		return nil, err
	}
	h, err := StartServers(opts)
	if err != nil {
		return nil, err
	}
	h.Executor = exe
	return h, nil
}

// StartServers starts the registry seeded with the base images and the HTTP
// server, without Kaniko: kiln's conformance runs use the same servers.
func StartServers(opts HarnessOptions) (*Harness, error) {
	reg, err := testenv.NewRegistry()
	if err != nil {
		return nil, err
	}
	h := &Harness{Registry: reg}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if h.BaseDigests, err = bases.Seed(reg, opts.Debian, logf); err != nil {
		h.Close()
		return nil, err
	}
	if err := h.serve(opts.Cases); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// CaseBases are the seeded base images the case can pull: busybox always,
// Debian when the case declares it.
func (h *Harness) CaseBases(c *corpus.Case) map[string]string {
	used := map[string]string{}
	for _, tag := range testenv.BusyboxMirrorTags {
		used[tag] = h.BaseDigests[tag]
	}
	if slices.Contains(c.Bases, "debian") {
		used[bases.DebianRepo] = h.BaseDigests[bases.DebianRepo]
	}
	return used
}

// Close stops the servers.
func (h *Harness) Close() {
	if h.httpServer != nil {
		h.httpServer.Close()
	}
	if h.Registry != nil {
		h.Registry.Close()
	}
}

// serveTime is the Last-Modified of served files; ADD <url> uses it as mtime.
var serveTime = time.Date(2021, 6, 7, 8, 9, 10, 0, time.UTC)

func (h *Harness) serve(cases []*corpus.Case) error {
	files := map[string]string{}
	for _, c := range cases {
		for urlPath, file := range c.Serve {
			files["/"+c.Name+path.Clean("/"+urlPath)] = filepath.Join(c.Dir, corpus.ServeDir, file)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var mu sync.Mutex
	h.httpServer = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		file, ok := files[r.URL.Path]
		mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		data, err := os.ReadFile(file)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		http.ServeContent(w, r, path.Base(r.URL.Path), serveTime, bytes.NewReader(data))
	})}
	go h.httpServer.Serve(ln)
	h.HTTPBase = "http://" + ln.Addr().String()
	return nil
}

// Destination is where a case's image is pushed; later cases reach it as
// FROM cases/<name> through the registry mirror.
func (h *Harness) Destination(c *corpus.Case) string {
	return h.Registry.Host + "/cases/" + c.Name + ":latest"
}

// CaseArgs are the case's own executor arguments, independent of the harness,
// with the context at Kaniko's /workspace.
func CaseArgs(c *corpus.Case) []string { return CaseArgsIn(c, kaniko.Workspace) }

// ReproducibleFlag is in every golden run's arguments.
const ReproducibleFlag = "--reproducible"

// CaseArgsIn are CaseArgs with the context at workspace.
func CaseArgsIn(c *corpus.Case, workspace string) []string {
	args := []string{"--dockerfile=" + path.Join(workspace, c.Dockerfile), "--context=dir://" + workspace, ReproducibleFlag}
	for _, a := range c.BuildArgs {
		args = append(args, "--build-arg="+a)
	}
	if c.Target != "" {
		args = append(args, "--target="+c.Target)
	}
	return append(args, c.Flags...)
}

// HarnessArgs point an executor at the loopback registry and HTTP server.
func (h *Harness) HarnessArgs(c *corpus.Case) []string {
	return []string{
		"--destination=" + h.Destination(c),
		"--insecure-registry=" + h.Registry.Host,
		"--registry-mirror=" + h.Registry.Host,
		"--build-arg=HTTP_BASE=" + h.HTTPBase + "/" + c.Name,
	}
}

// Run builds one case once with Kaniko and inspects the pushed image.
func (h *Harness) Run(ctx context.Context, c *corpus.Case, run int) (Outcome, *inspect.Image, time.Duration, error) {
	ctxDir, err := os.MkdirTemp(h.ScratchDir, "kaniko-context-")
	if err != nil {
		return Outcome{}, nil, 0, err
	}
	defer os.RemoveAll(ctxDir)
	workspace := filepath.Join(ctxDir, "workspace")
	if err := c.Materialize(workspace); err != nil {
		return Outcome{}, nil, 0, err
	}
	var env []string
	for k, v := range c.Env {
		env = append(env, k+"="+v)
	}
	var log io.Writer
	if h.LogDir != "" {
		f, err := os.Create(filepath.Join(h.LogDir, fmt.Sprintf("%s.%d.log", c.Name, run)))
		if err != nil {
			return Outcome{}, nil, 0, err
		}
		defer f.Close()
		log = f
	}
	res, err := kaniko.Run{
		Executor:   h.Executor,
		Context:    workspace,
		Args:       append(CaseArgs(c), h.HarnessArgs(c)...),
		Env:        env,
		ScratchDir: h.ScratchDir,
		Log:        log,
	}.Execute(ctx)
	if err != nil {
		return Outcome{}, nil, 0, fmt.Errorf("case %s: %w", c.Name, err)
	}
	if res.ExitCode != 0 {
		msg := KanikoMessage(res.OutputTail, h.Placeholders(c))
		return Outcome{Result: corpus.OutcomeFailed, ExitCode: res.ExitCode, Class: ClassifyKaniko(msg), Message: msg}, nil, res.Duration, nil
	}
	ref := h.Registry.Host + "/cases/" + c.Name + "@" + res.Digest
	img, err := inspect.Remote(ref, true, inspect.Options{MaxListedEntries: MaxListedEntries})
	if err != nil {
		return Outcome{}, nil, 0, fmt.Errorf("case %s: %w", c.Name, err)
	}
	return Outcome{Result: corpus.OutcomeBuilt}, img, res.Duration, nil
}

// Placeholders replace harness addresses in messages, so goldens stay stable.
func (h *Harness) Placeholders(c *corpus.Case) map[string]string {
	return map[string]string{h.HTTPBase + "/" + c.Name: "<http>", h.Registry.Host: "<registry>"}
}

// Generate builds a case `runs` times (at least once) and returns its golden.
func (h *Harness) Generate(ctx context.Context, c *corpus.Case, runs int) (*Golden, time.Duration, error) {
	g := &Golden{Case: c.Name, Kaniko: kaniko.Version, Args: CaseArgs(c), Bases: h.CaseBases(c), Deterministic: true}
	var total time.Duration
	for run := 1; run <= max(runs, 1); run++ {
		out, img, took, err := h.Run(ctx, c, run)
		if err != nil {
			return nil, total, err
		}
		total += took
		if run == 1 {
			g.Outcome, g.Image = out, img
			continue
		}
		if out.Result != g.Outcome.Result || out.ExitCode != g.Outcome.ExitCode || out.Class != g.Outcome.Class {
			g.Deterministic = false
			g.Differences = append(g.Differences, fmt.Sprintf("run %d outcome %s/%d/%s", run, out.Result, out.ExitCode, out.Class))
			continue
		}
		if img != nil && g.Image != nil {
			if diffs := Compare(g.Image, img); len(diffs) > 0 {
				g.Deterministic = false
				g.Differences = append(g.Differences, diffs...)
			}
		}
	}
	return g, total, nil
}

// CheckExpectation reports when Kaniko's outcome contradicts what the case
// manifest says it was written to produce.
func CheckExpectation(c *corpus.Case, g *Golden) error {
	o := g.Outcome
	if o.Result != c.Expect.Outcome {
		return fmt.Errorf("case %s: expected %s, kaniko %s (exit %d: %s)", c.Name, c.Expect.Outcome, o.Result, o.ExitCode, o.Message)
	}
	if o.Result == corpus.OutcomeFailed {
		if o.ExitCode != c.Expect.ExitCode {
			return fmt.Errorf("case %s: expected exit code %d, kaniko exited %d (%s)", c.Name, c.Expect.ExitCode, o.ExitCode, o.Message)
		}
		if c.Expect.Error != "" && !matches(c.Expect.Error, o.Message) {
			return fmt.Errorf("case %s: kaniko's error %q does not match %q", c.Name, o.Message, c.Expect.Error)
		}
	}
	return nil
}

func matches(pattern, s string) bool {
	return regexpMatch(pattern, s) || strings.Contains(s, pattern)
}
