package executor

import (
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"regexp"
	"strconv"
	"strings"

	containerdlog "github.com/containerd/log"
	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/executor/helper"
	"github.com/moby/buildkit/client"
	gatewaypb "github.com/moby/buildkit/frontend/gateway/pb"
	"github.com/moby/buildkit/util/bklog"
	"github.com/moby/buildkit/util/progress/progressui"
	digest "github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
)

// ProgressOptions routes build progress. Instruction lines go through Logger
// so --log-format and --log-timestamp apply; RUN output is written raw to
// Stdout/Stderr like Kaniko does.
type ProgressOptions struct {
	Logger *logrus.Logger // nil: logrus' standard logger
	Stdout io.Writer      // nil: os.Stdout
	Stderr io.Writer      // nil: os.Stderr
	// Debug adds BuildKit's plain progress at debug level (--verbosity=debug).
	Debug bool
	// Steps names steps by their instructions as written, as Kaniko logs
	// them; nil keeps BuildKit's names, which carry ARG and ENV values.
	Steps *compat.StepNames
	// Secrets hides build-arg values in the rest of what BuildKit reports.
	Secrets *secretFilter

	notStarted *notStartedSteps // set by Solve
	// said, when set, holds the steps earlier solves of the same build
	// logged lines for.
	said map[string]bool
}

// asWritten rewrites s, before anything shows it, so that no build-arg
// value BuildKit substituted reaches a log line: steps by their
// instructions as written, other names, errors and warnings filtered. RUN
// output is the user's and stays as it is, as in Kaniko.
func (o ProgressOptions) asWritten(s *client.SolveStatus) {
	for _, v := range s.Vertexes {
		if written, ok := o.writtenLinkMerge(v.Name); ok {
			v.Name = written
		} else if written, ok := o.Steps.Written(v.Name); ok {
			v.Name = written
		} else {
			v.Name = o.Secrets.Redact(v.Name)
		}
		v.Error = o.Secrets.Redact(v.Error)
	}
	for _, st := range s.Statuses {
		st.ID, st.Name = o.Secrets.Redact(st.ID), o.Secrets.Redact(st.Name)
	}
	for _, w := range s.Warnings {
		w.Short = []byte(o.Secrets.Redact(string(w.Short)))
		for i, d := range w.Detail {
			w.Detail[i] = []byte(o.Secrets.Redact(string(d)))
		}
	}
}

// writtenLinkMerge is Written for the merge step of a COPY --link, named
// after the COPY: "[2/3] LINK COPY …".
func (o ProgressOptions) writtenLinkMerge(name string) (string, bool) {
	prefix, rest, ok := strings.Cut(name, "] "+linkMerge)
	if !ok {
		return "", false
	}
	written, ok := o.Steps.Written(prefix + "] " + rest)
	if !ok {
		return "", false
	}
	return prefix + "] " + linkMerge + written[len(prefix)+2:], true
}

// showProgress consumes ch until it is closed; it always drains ch so the
// solve never blocks on it.
func showProgress(ch <-chan *client.SolveStatus, opts ProgressOptions) error {
	if opts.Logger == nil {
		opts.Logger = logrus.StandardLogger()
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	p := &kanikoProgress{opts: opts, announced: map[digest.Digest]bool{}, cached: map[digest.Digest]bool{}, linkedCopies: map[digest.Digest]bool{}, saidNow: map[string]bool{}}
	defer func() {
		if opts.said != nil {
			maps.Copy(opts.said, p.saidNow)
		}
	}()
	if !opts.Debug {
		for s := range ch {
			p.noteLinkedCopies(s)
			opts.asWritten(s)
			p.handle(s)
		}
		return nil
	}

	// Written only by the display goroutine, line by line, synchronously.
	plainOut := &engine.LineWriter{Emit: func(line string) { opts.Logger.Debug(line) }}
	display, err := progressui.NewDisplay(plainOut, progressui.PlainMode)
	if err != nil {
		for s := range ch {
			p.noteLinkedCopies(s)
			opts.asWritten(s)
			p.handle(s)
		}
		return nil
	}
	plainCh := make(chan *client.SolveStatus)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Its warnings are reported by handle; its error only concerns display.
		_, _ = display.UpdateFrom(context.Background(), plainCh)
		for range plainCh {
		}
		plainOut.Flush()
	}()
	for s := range ch {
		p.noteLinkedCopies(s)
		opts.asWritten(s)
		p.handle(s)
		plainCh <- s
	}
	close(plainCh)
	<-done
	return nil
}

type kanikoProgress struct {
	opts      ProgressOptions
	announced map[digest.Digest]bool
	cached    map[digest.Digest]bool
	saidNow   map[string]bool // steps logged by this solve (see say)
	// linkedCopies are the COPY --link steps: their line comes with their
	// merge step, which runs in the Dockerfile's order (the copy itself
	// starts at once).
	linkedCopies map[digest.Digest]bool
}

// noteLinkedCopies finds the COPY --link steps among s's vertices; it
// reads BuildKit's names, before asWritten.
func (p *kanikoProgress) noteLinkedCopies(s *client.SolveStatus) {
	for _, v := range s.Vertexes {
		if m := instructionVertex.FindStringSubmatch(v.Name); m != nil && isLinkedCopy(m[1]) {
			p.linkedCopies[v.Digest] = true
		}
	}
}

// isLinkedCopy reports whether an instruction is a COPY with --link among
// its flags.
func isLinkedCopy(instruction string) bool {
	words := strings.Fields(instruction)
	if len(words) == 0 || !strings.EqualFold(words[0], "COPY") {
		return false
	}
	for _, w := range words[1:] {
		if !strings.HasPrefix(w, "--") {
			return false
		}
		if w == "--link" || w == "--link=true" {
			return true
		}
	}
	return false
}

func (p *kanikoProgress) handle(s *client.SolveStatus) {
	p.opts.notStarted.observe(s)
	for _, v := range s.Vertexes {
		if p.linkedCopies[v.Digest] {
			continue
		}
		lines := kanikoLines(v.Name)
		if v.Cached && !p.cached[v.Digest] {
			p.cached[v.Digest] = true
			// Kaniko's line for a step taken from the layer cache.
			for _, line := range lines {
				p.say(v.Name, "Using caching version of cmd: "+line)
			}
		}
		if v.Started == nil || p.announced[v.Digest] {
			continue
		}
		p.announced[v.Digest] = true
		for _, line := range lines {
			p.say(v.Name, line)
		}
	}
	for _, l := range s.Logs {
		out := p.opts.Stdout
		if l.Stream == 2 {
			out = p.opts.Stderr
		}
		_, _ = out.Write(l.Data)
	}
	for _, w := range s.Warnings {
		p.opts.Logger.Debugf("BuildKit warning: %s", w.Short)
	}
}

var (
	// "[stage-1 3/5] RUN echo hi", "[2/3] COPY a /a"
	// "[ 2/10] WORKDIR /a": BuildKit pads the number to the count's width.
	instructionVertex = regexp.MustCompile(`^\[(?:\S+ )?\s*\d+/\d+\] (.+)$`)
)

// say logs a line of a step, unless an earlier solve of the same build
// logged one for it (see shape.ErrLinkedCopyDiffers): steps are told
// apart by BuildKit's "[stage n/m" prefix.
func (p *kanikoProgress) say(step, line string) {
	if p.opts.said != nil {
		key, _, _ := strings.Cut(step, "] ")
		if p.opts.said[key] && !p.saidNow[key] {
			return
		}
		p.saidNow[key] = true
	}
	p.opts.Logger.Info(line)
}

// linkMerge starts the name of the step that puts a COPY --link's layer on
// top of the filesystem below.
const linkMerge = "LINK "

// kanikoLines maps a BuildKit vertex name to the lines Kaniko logs for the
// same step; vertices Kaniko has no counterpart for map to nothing. Base
// images are announced by BaseImageResolver, which resolves every one of
// them before the solve, so BuildKit's metadata and FROM vertices add nothing.
// A COPY --link is logged with its merge step.
func kanikoLines(vertex string) []string {
	m := instructionVertex.FindStringSubmatch(vertex)
	if m == nil || strings.HasPrefix(m[1], "FROM ") {
		return nil
	}
	return []string{strings.TrimPrefix(m[1], linkMerge)}
}

// notStartedSteps finds a failed RUN whose process never started (a
// scratch stage has no /bin/sh): BuildKit reports only exit code 1, and
// runc's account of it is then the step's only output.
type notStartedSteps struct {
	output map[digest.Digest][]byte // each step's first output, capped
	failed []digest.Digest
}

// maxStartFailure bounds the output kept per step: runc's line is short.
const maxStartFailure = 1024

var runcStartFailure = regexp.MustCompile(`^(?:runc run failed: )?unable to start container process: (exec: [^\n]+)\n?$`)

func newNotStartedSteps() *notStartedSteps {
	return &notStartedSteps{output: map[digest.Digest][]byte{}}
}

func (n *notStartedSteps) observe(s *client.SolveStatus) {
	if n == nil {
		return
	}
	for _, l := range s.Logs {
		if out := n.output[l.Vertex]; len(out) <= maxStartFailure {
			n.output[l.Vertex] = append(out, l.Data...)
		}
	}
	for _, v := range s.Vertexes {
		if v.Error != "" {
			n.failed = append(n.failed, v.Digest)
		}
	}
}

// reason is runc's account of a failed step that never started, or "".
func (n *notStartedSteps) reason() string {
	if n == nil {
		return ""
	}
	for _, d := range n.failed {
		if m := runcStartFailure.FindSubmatch(n.output[d]); m != nil {
			return string(m[1])
		}
	}
	return ""
}

// notStartedError is a RUN whose program could not be started; err is
// BuildKit's report (it names the instruction).
type notStartedError struct {
	reason string
	err    error
}

func (e *notStartedError) Error() string { return "RUN could not start its command: " + e.reason }

func (e *notStartedError) Unwrap() error { return e.err }

// BuildError is a failed build. ExitCode is the failing RUN command's exit
// code, or 1, so the executor exits like Kaniko.
type BuildError struct {
	Err  error
	Code int
}

func (e *BuildError) Error() string { return "error building image: " + helper.OneLine(e.Err.Error()) }

func (e *BuildError) Unwrap() error { return e.Err }

// ExitCode is the process exit code Kaniko would use for this failure.
func (e *BuildError) ExitCode() int { return e.Code }

var exitCodeSuffix = regexp.MustCompile(`exit code: (\d+)\s*$`)

func newBuildError(err error) *BuildError {
	be := &BuildError{Err: err, Code: 1}
	var exitErr *gatewaypb.ExitError
	if errors.As(err, &exitErr) && exitErr.ExitCode != 0 {
		be.Code = int(exitErr.ExitCode)
	} else if m := exitCodeSuffix.FindStringSubmatch(err.Error()); m != nil {
		// Older daemons may not send the typed error.
		if code, convErr := strconv.Atoi(m[1]); convErr == nil && code != 0 {
			be.Code = code
		}
	}
	return be
}

// Client-side BuildKit and containerd code logs through package-level
// loggers (e.g. a warning whenever the layout's filesystem lacks fsverity).
// Kaniko prints no such lines, so they are re-emitted at debug level on the
// standard logger, which the executor configures for --verbosity/--log-format.
func init() {
	demoted := logrus.New()
	demoted.Out = io.Discard
	demoted.Level = logrus.DebugLevel
	demoted.AddHook(debugOnStandardLogger{})
	entry := logrus.NewEntry(demoted)
	bklog.L = entry
	containerdlog.L = entry
}

type debugOnStandardLogger struct{}

func (debugOnStandardLogger) Levels() []logrus.Level { return logrus.AllLevels }

func (debugOnStandardLogger) Fire(e *logrus.Entry) error {
	logrus.StandardLogger().WithFields(e.Data).Debug(e.Message)
	return nil
}
