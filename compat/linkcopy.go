package compat

import (
	"regexp"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// LinkableCopies are the COPY instructions that end a stage, followed by
// nothing but metadata instructions, that BuildKit can build as `COPY
// --link` (copied into an empty layer, merged on top) without reading the
// filesystem below: no heredoc, no --chmod (BuildKit then copies in
// place), no --chown by name (it needs /etc/passwd below), no --parents,
// and a destination without variables (kiln resolves it to check the
// result). As the stage's last filesystem step nothing else reads the
// merged filesystem, so a rebuild whose only change is such a COPY needs
// the layers below neither downloaded for a step nor unpacked. Whether the
// result equals a plain COPY's depends on the filesystem below; shaping
// checks that (shape.ErrLinkedCopyDiffers).
func LinkableCopies(cmds []instructions.Command) []*instructions.CopyCommand {
	var linkable []*instructions.CopyCommand
	for i := len(cmds) - 1; i >= 0; i-- {
		switch c := cmds[i].(type) {
		case *instructions.CopyCommand:
			if !copyLinkable(c) {
				return linkable
			}
			linkable = append(linkable, c)
		case *instructions.EnvCommand, *instructions.LabelCommand, *instructions.ExposeCommand,
			*instructions.CmdCommand, *instructions.EntrypointCommand, *instructions.UserCommand,
			*instructions.ArgCommand, *instructions.StopSignalCommand, *instructions.HealthCheckCommand,
			*instructions.ShellCommand, *instructions.OnbuildCommand, *instructions.MaintainerCommand:
			// Image config only.
		default:
			return linkable
		}
	}
	return linkable
}

var numericChown = regexp.MustCompile(`^[0-9]+(:[0-9]+)?$`)

func copyLinkable(c *instructions.CopyCommand) bool {
	return len(c.SourceContents) == 0 && c.Chmod == "" && !c.Parents &&
		(c.Chown == "" || numericChown.MatchString(c.Chown)) &&
		!strings.Contains(c.DestPath, "$")
}

// copyKeyword is the keyword of a COPY line and the blank after it.
var copyKeyword = regexp.MustCompile(`(?i)^(\s*copy)(\s)`)

// WithLinkedCopies writes --link into the LinkableCopies of the target
// stage (the last one when target is empty); changed is false when there
// are none or all have it.
func WithLinkedCopies(dt []byte, target string) (rewritten []byte, changed bool, err error) {
	_, stages, _, err := parseInstructions(dt)
	if err != nil || len(stages) == 0 {
		return dt, false, err
	}
	names := make([]string, len(stages))
	for i, s := range stages {
		names[i] = s.Name
	}
	i := targetIndex(names, target)
	if i < 0 {
		return dt, false, nil
	}
	stage := stages[i]
	lines := strings.SplitAfter(string(dt), "\n")
	for _, c := range LinkableCopies(stage.Commands) {
		loc := c.Location()
		if c.Link || len(loc) == 0 || loc[0].Start.Line > len(lines) {
			continue
		}
		n := loc[0].Start.Line - 1
		if m := copyKeyword.FindStringSubmatchIndex(lines[n]); m != nil {
			lines[n] = lines[n][:m[3]] + " --link" + lines[n][m[3]:]
			changed = true
		}
	}
	if !changed {
		return dt, false, nil
	}
	return []byte(strings.Join(lines, "")), true, nil
}
