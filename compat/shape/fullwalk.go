package shape

import (
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// copiesNothing reports whether Kaniko's COPY/ADD cmd finds no source to
// copy: every source is a context path or glob that matches nothing the
// .dockerignore keeps. Kaniko then has no file list to snapshot and walks
// the whole filesystem instead (stageBuilder.takeSnapshot with nil files).
// Unknown answers (no ContextMatches, COPY --from, variables, URLs, heredocs)
// count as copying something.
func (s *shaper) copiesNothing(cmd instructions.Command) (bool, error) {
	fc, ok := fileCopyOf(cmd)
	if !ok || s.opts.ContextMatches == nil || fc.from != "" || len(fc.sd.SourceContents) > 0 || len(fc.sd.SourcePaths) == 0 {
		return false, nil
	}
	for _, src := range fc.sd.SourcePaths {
		if strings.Contains(src, "$") || strings.Contains(src, "://") {
			return false, nil
		}
		matched, err := s.opts.ContextMatches(cleanPath(src))
		if err != nil {
			return false, fmt.Errorf("matching %s in the build context: %w", src, err)
		}
		if matched {
			return false, nil
		}
	}
	return true, nil
}

// ranBefore reports whether a RUN precedes the instruction n (in build
// order) in its stage: Kaniko records the whole filesystem before the first
// RUN, after which a full walk finds only what changed.
func (c *chain) ranBefore(n int) bool {
	for i := n - 1; i >= 0 && c.layerStage[i] == c.layerStage[n]; i-- {
		if _, ok := c.layerCmds[i].(*instructions.RunCommand); ok {
			return true
		}
	}
	return false
}

// fullWalkLayer is the layer Kaniko writes for a COPY/ADD that copies
// nothing in a stage no RUN has recorded yet: every file of the filesystem
// (layers[:below]) that the stage's earlier snapshots (earlier) did not
// take, with its parent directories. nil when that leaves nothing.
func (s *shaper) fullWalkLayer(below int, earlier []v1.Layer) (v1.Layer, error) {
	w := s.writer
	c, err := w.read(s.layers[:below])
	if err != nil {
		return nil, err
	}
	defer c.spool.Close()
	// Below the stage's first snapshot nothing counts as deleted.
	c.deleted, c.opaque = map[string]bool{}, nil
	taken := tree{}
	for _, l := range earlier {
		if err := applyLayer(taken, l); err != nil {
			return nil, fmt.Errorf("reading the stage's earlier layer: %w", err)
		}
	}
	for p := range taken {
		delete(c.entries, p)
	}
	if len(c.entries) == 0 {
		return nil, nil
	}
	c.regroupHardlinks()
	lower := func() (tree, error) { return s.lowerAt(below) }
	file, err := w.writeTar(c, lower)
	if err != nil {
		return nil, err
	}
	return s.layerFromFile(file, below-1)
}

// nothingCopiedLayer is, for instruction n (in build order), Kaniko's
// whole-filesystem layer over layers[:below] when n is a COPY/ADD that
// copies nothing before any RUN of its stage (walked is true; the layer is
// nil when the walk finds nothing new). earlier are the stage's Kaniko
// layers so far. With --single-snapshot Kaniko walks at the end anyway.
func (s *shaper) nothingCopiedLayer(n, below int, earlier []v1.Layer) (l v1.Layer, walked bool, err error) {
	if n < 0 || s.opts.SingleSnapshot || s.chain.ranBefore(n) {
		return nil, false, nil
	}
	nothing, err := s.copiesNothing(s.chain.layerCmds[n])
	if err != nil || !nothing {
		return nil, false, err
	}
	l, err = s.fullWalkLayer(below, earlier)
	return l, true, err
}
