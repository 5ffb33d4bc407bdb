package executor

import (
	"context"
	"os"
	"slices"
	"sync"

	"github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/kilnbuild/kiln/compat"
)

// stageExtraTargets makes the extra stages (compat.Dockerfile.ExtraStages)
// buildable as BuildKit targets, naming the unnamed ones in the staged
// Dockerfile copy, which it reads and rewrites in place so that other
// rewrites of the copy compose. It returns their target names.
func stageExtraTargets(staged string, extra []compat.Stage) ([]string, error) {
	if len(extra) == 0 {
		return nil, nil
	}
	content, err := os.ReadFile(staged)
	if err != nil {
		return nil, err
	}
	rewritten, changed, err := compat.WithStageNames(content, extra)
	if err != nil {
		return nil, err
	}
	if changed {
		if err := os.WriteFile(staged, rewritten, 0o600); err != nil {
			return nil, err
		}
	}
	targets := make([]string, len(extra))
	for i, s := range extra {
		targets[i] = s.TargetName()
	}
	return targets, nil
}

// stageKanikoInstructions rewrites the staged Dockerfile where Kaniko's
// instructions mean something else than BuildKit's: ARG names as Kaniko
// reads them (compat.WithKanikoArgNames), ARGs declared by the stages Kaniko
// built before (compat.WithKanikoArgScope), MAINTAINER, which Kaniko skips
// (compat.WithoutMaintainer), COPY/ADD paths with backslashes under
// `# escape=“ (compat.WithKanikoBackslashes), COPY/ADD sources the .dockerignore next to
// staged excludes (compat.WithIgnoredSources), sources with glob
// characters naming a context file (compat.WithLiteralGlobSources), FROM
// values Kaniko resolves otherwise (compat.WithKanikoBaseNames) and FROM
// --platform, which Kaniko ignores (compat.WithoutFromPlatform). all are the
// Dockerfile's stages, built the ones Kaniko builds; ctxDir is the local
// build context.
func stageKanikoInstructions(staged, ctxDir string, all, built []compat.Stage, buildArgs []string, log logrus.FieldLogger) error {
	content, err := os.ReadFile(staged)
	if err != nil {
		return err
	}
	order := make([]int, len(built))
	for i, s := range built {
		order[i] = s.Index
	}
	// Names first: the ARG scope then carries the expanded names.
	rewritten, namesChanged, err := compat.WithKanikoArgNames(content, all)
	if err != nil {
		return err
	}
	rewritten, argsChanged, notes, err := compat.WithKanikoArgScope(rewritten, order, buildArgs)
	if err != nil {
		return err
	}
	for _, note := range notes {
		log.Debugf("Kaniko ARG scope: %s", note)
	}
	rewritten, maintainers, err := compat.WithoutMaintainer(rewritten)
	if err != nil {
		return err
	}
	for range maintainers {
		log.Warn("MAINTAINER is deprecated; skipped, as Kaniko does")
	}
	rewritten, backslashesChanged, err := compat.WithKanikoBackslashes(rewritten)
	if err != nil {
		return err
	}
	ignoredChanged := false
	if ignore, err := os.ReadFile(staged + ".dockerignore"); err == nil {
		if rewritten, ignoredChanged, err = compat.WithIgnoredSources(rewritten, ignore); err != nil {
			return err
		}
	}
	rewritten, globsChanged, err := compat.WithLiteralGlobSources(rewritten, ctxDir)
	if err != nil {
		return err
	}
	rewritten, basesChanged, err := compat.WithKanikoBaseNames(rewritten, all)
	if err != nil {
		return err
	}
	rewritten, platformsChanged, err := compat.WithoutFromPlatform(rewritten)
	if err != nil {
		return err
	}
	if !argsChanged && len(maintainers) == 0 && !basesChanged && !namesChanged && !ignoredChanged && !globsChanged && !backslashesChanged && !platformsChanged {
		return nil
	}
	return os.WriteFile(staged, rewritten, 0o600)
}

// stageLinkedCopies writes --link into the COPYs that end the target stage
// (compat.WithLinkedCopies), so that a rebuild changing only them neither
// unpacks nor downloads the layers below for them. It returns the staged
// Dockerfile as it was, for a build again without --link where shaping
// finds the results differ (shape.ErrLinkedCopyDiffers); linked is false
// when nothing was rewritten.
func stageLinkedCopies(staged, target string) (unlinked []byte, linked bool, err error) {
	content, err := os.ReadFile(staged)
	if err != nil {
		return nil, false, err
	}
	rewritten, linked, err := compat.WithLinkedCopies(content, target)
	if err != nil || !linked {
		return nil, false, err
	}
	return content, true, os.WriteFile(staged, rewritten, 0o600)
}

// solveWithExtraStages builds the stages Kaniko builds that the target does
// not need (req.ExtraTargets) next to the main solve (opt), so that their
// steps run and a failure fails the build, as under Kaniko. It closes
// statusCh when every solve has ended.
//
// Each extra stage is its own c.Solve on the same daemon, with its own
// session and no export, running concurrently with the main solve; the
// solver runs the steps they share once. One gateway build (c.Build with a
// build function solving each target) was slower when measured (two stages
// with a COPY and a RUN each, no cache, 2 cores): 1.1 s for the target
// alone, 1.1–1.5 s with a separate solve for the extra stage, 1.8 s as one
// gateway build (1.3 s for the target alone through the gateway), and it
// would move the build off the plain c.Solve used without extra stages.
//
// The extra solves import the layer cache but export none: BuildKit exports
// one cache per build identity, and the main solve's (mode=max) must not be
// overwritten by a stage the image does not contain.
//
// Kaniko builds stages in order and stops at the first failure, so the
// failure reported is the earliest stage's: a failing solve cancels only
// the solves of later stages (the main one comes last), and earlier ones
// run to their end.
func solveWithExtraStages(ctx context.Context, c *client.Client, req SolveRequest, opt client.SolveOpt, statusCh chan *client.SolveStatus) (*client.SolveResponse, error) {
	progress := &progressMerger{out: statusCh, owner: map[digest.Digest]int{}, abandoned: map[int]bool{}}
	defer progress.closeWhenDone()
	opts := make([]client.SolveOpt, 0, len(req.ExtraTargets)+1)
	for _, target := range req.ExtraTargets {
		extra := req
		extra.Target = target
		extra.CacheExports = nil
		extraOpt, err := solveOpt(extra)
		if err != nil {
			return nil, err
		}
		extraOpt.Exports = nil
		opts = append(opts, *extraOpt)
	}
	opts = append(opts, opt)
	main := len(opts) - 1

	ctxs := make([]context.Context, len(opts))
	cancels := make([]context.CancelFunc, len(opts))
	for i := range opts {
		ctxs[i], cancels[i] = context.WithCancel(ctx)
		defer cancels[i]()
	}
	var (
		mu          sync.Mutex
		errs        = make([]error, len(opts))
		firstFailed = len(opts)
		resp        *client.SolveResponse
		solves      sync.WaitGroup
	)
	for i, opt := range opts {
		ch := progress.add(i)
		solves.Go(func() {
			r, err := c.Solve(ctxs[i], nil, opt, ch)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				if i == main {
					resp = r
				}
				return
			}
			errs[i] = err
			if i < firstFailed {
				firstFailed = i
				for later, cancel := range cancels[i+1:] {
					progress.abandon(i + 1 + later)
					cancel()
				}
			}
		})
	}
	solves.Wait()
	if firstFailed < len(opts) {
		return nil, errs[firstFailed]
	}
	return resp, nil
}

// progressMerger forwards the progress of several solves into one channel.
// BuildKit sends the progress of a step that solves share to each of them
// (replaying what was sent before to a solve that joins late, or reporting
// the step as cached to one that comes after it ended), so each step is
// shown only as the first solve that reports it sees it.
type progressMerger struct {
	out       chan *client.SolveStatus
	mu        sync.Mutex
	owner     map[digest.Digest]int // vertex -> solve whose reports are shown
	abandoned map[int]bool          // solves cancelled: others take their steps over
	forwards  sync.WaitGroup
}

// add returns the status channel for solve id; c.Solve closes it.
func (m *progressMerger) add(id int) chan *client.SolveStatus {
	in := make(chan *client.SolveStatus)
	m.forwards.Go(func() {
		for s := range in {
			if own := m.ownPart(id, s); own != nil {
				m.out <- own
			}
		}
	})
	return in
}

// abandon hands the steps of a cancelled solve to the next solve that
// reports them, which may still be running them.
func (m *progressMerger) abandon(id int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.abandoned[id] = true
}

// ownPart is what of s concerns steps that solve id owns, or nil.
func (m *progressMerger) ownPart(id int, s *client.SolveStatus) *client.SolveStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	owns := func(vertex digest.Digest) bool {
		owner, ok := m.owner[vertex]
		if !ok || (owner != id && m.abandoned[owner] && !m.abandoned[id]) {
			m.owner[vertex], owner = id, id
		}
		return owner == id
	}
	// s is this solve's own message: it is filtered in place.
	s.Vertexes = slices.DeleteFunc(s.Vertexes, func(v *client.Vertex) bool { return !owns(v.Digest) })
	s.Statuses = slices.DeleteFunc(s.Statuses, func(v *client.VertexStatus) bool { return !owns(v.Vertex) })
	s.Logs = slices.DeleteFunc(s.Logs, func(l *client.VertexLog) bool { return !owns(l.Vertex) })
	s.Warnings = slices.DeleteFunc(s.Warnings, func(w *client.VertexWarning) bool { return !owns(w.Vertex) })
	if len(s.Vertexes)+len(s.Statuses)+len(s.Logs)+len(s.Warnings) == 0 {
		return nil
	}
	return s
}

// closeWhenDone closes the merged channel after every solve's channel has
// been drained.
func (m *progressMerger) closeWhenDone() {
	m.forwards.Wait()
	close(m.out)
}
