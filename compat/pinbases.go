package compat

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// WithPinnedBases makes each FROM of an image in pinned (keyed by the
// expanded base, Stage.Base) name the image it maps to: the registry and
// digest kiln resolved. It is the same build a source policy gives, for
// daemons whose Dockerfile frontend looks base images up without applying
// the policy. Each FROM keeps its flags, its stage name and its line
// numbers (continuation lines become comments).
func (d *Dockerfile) WithPinnedBases(dt []byte, pinned map[string]string) (rewritten []byte, changed bool, err error) {
	lines, froms, err := fromInstructions(dt)
	if err != nil {
		return nil, false, err
	}
	if len(froms) != len(d.Stages) {
		return nil, false, fmt.Errorf("pinning base images: %d FROM lines for %d stages", len(froms), len(d.Stages))
	}
	for stage, node := range froms {
		s := d.Stages[stage]
		to, ok := pinned[s.Base]
		if !ok || s.BaseStage >= 0 || s.IsScratch() {
			continue
		}
		from := "FROM " + strings.Join(append(append([]string(nil), node.Flags...), to), " ")
		if s.Name != "" {
			from += " AS " + s.Name
		}
		for n := node.StartLine; n <= node.EndLine; n++ {
			ending := lines[n-1][len(strings.TrimRight(lines[n-1], "\r\n")):]
			if n == node.StartLine {
				lines[n-1] = from + ending
			} else {
				lines[n-1] = "#" + ending
			}
		}
		changed = true
	}
	if !changed {
		return dt, false, nil
	}
	rewritten = []byte(strings.Join(lines, ""))
	check, err := parser.Parse(bytes.NewReader(rewritten))
	if err == nil {
		var stages []instructions.Stage
		if stages, _, err = instructions.Parse(check.AST, nil); err == nil && len(stages) != len(d.Stages) {
			err = fmt.Errorf("%d stages instead of %d", len(stages), len(d.Stages))
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("pinning base images in the Dockerfile: %w", err)
	}
	return rewritten, true, nil
}
