package shape

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/kilnbuild/kiln/compat"
)

// buildkitComment marks history entries BuildKit's Dockerfile frontend wrote.
const buildkitComment = "buildkit.dockerfile.v0"

// layerInstructions are the instructions that may produce a layer, in
// BuildKit and in Kaniko alike.
var layerInstructions = map[string]bool{"RUN": true, "COPY": true, "ADD": true, "WORKDIR": true}

// chain is what shaping needs from the stages the target is built on.
type chain struct {
	// layerTexts is, in build order, the original text of every
	// RUN/COPY/ADD/WORKDIR: Kaniko's created_by is exactly this text.
	layerTexts []string
	// layerCmds are the same instructions, parsed; layerStage the index
	// (in build order) of the stage each belongs to.
	layerCmds  []instructions.Command
	layerStage []int
	// used holds the instruction keywords that occur (upper case).
	used map[string]bool
	// scratch is true when the first stage starts FROM scratch.
	scratch bool
	// linked are the target stage's COPYs built with --link.
	linked map[*instructions.CopyCommand]bool
	// portRanges are the EXPOSE values written as ranges (8000-8002[/udp])
	// with the ARG values they may use.
	portRanges []portRange
}

// portRange is one EXPOSE value that may be a port range, as written.
type portRange struct {
	port string
	args []string
}

// readChain parses the Dockerfile for the target stage and the stages it
// is built FROM.
func readChain(dockerfile []byte, target string, buildArgs []string, volumeDirs, linkedCopies bool) (*chain, error) {
	df, err := compat.ParseDockerfileBytes("Dockerfile", dockerfile, buildArgs)
	if err != nil {
		return nil, err
	}
	stage, err := df.TargetStage(target)
	if err != nil {
		return nil, err
	}
	ast, err := parser.Parse(bytes.NewReader(dockerfile))
	if err != nil {
		return nil, err
	}
	stages, _, err := instructions.Parse(ast.AST, linter.New(&linter.Config{}))
	if err != nil {
		return nil, err
	}
	if len(stages) != len(df.Stages) {
		return nil, fmt.Errorf("dockerfile: %d stages parsed, %d expected", len(stages), len(df.Stages))
	}
	var order []int
	for i := stage.Index; i >= 0; i = df.Stages[i].BaseStage {
		order = append([]int{i}, order...)
	}
	c := &chain{used: map[string]bool{}, scratch: df.Stages[order[0]].IsScratch(), linked: map[*instructions.CopyCommand]bool{}}
	if linkedCopies {
		for _, cp := range compat.LinkableCopies(stages[stage.Index].Commands) {
			c.linked[cp] = true
		}
	}
	given := map[string]string{}
	for _, kv := range buildArgs {
		k, v, _ := strings.Cut(kv, "=")
		given[k] = v
	}
	var args []string // KEY=VALUE of the ARGs declared so far, for VOLUME paths
	lex := shell.NewLex('\\')
	for n, i := range order {
		cmds := stages[i].Commands
		if n > 0 {
			triggers, err := onbuildTriggers(stages[order[n-1]].Commands)
			if err != nil {
				return nil, err
			}
			cmds = append(triggers, cmds...)
		}
		for _, cmd := range cmds {
			if arg, ok := cmd.(*instructions.ArgCommand); ok {
				args = declareArgs(args, arg, given, lex)
			}
			keyword := strings.ToUpper(cmd.Name())
			c.used[keyword] = true
			if layerInstructions[keyword] {
				c.layerTexts = append(c.layerTexts, strings.TrimSpace(fmt.Sprint(cmd)))
				c.layerCmds = append(c.layerCmds, cmd)
				c.layerStage = append(c.layerStage, n)
			}
			if expose, ok := cmd.(*instructions.ExposeCommand); ok {
				for _, port := range expose.Ports {
					if strings.Contains(port, "-") || strings.Contains(port, "$") {
						c.portRanges = append(c.portRanges, portRange{port: port, args: slices.Clone(args)})
					}
				}
			}
			if vol, ok := cmd.(*instructions.VolumeCommand); ok && volumeDirs {
				for _, v := range compat.VolumePaths(vol) {
					c.layerTexts = append(c.layerTexts, compat.VolumeDirCopy(v))
					c.layerCmds = append(c.layerCmds, volumeDir{VolumeCommand: vol, path: v, args: slices.Clone(args)})
					c.layerStage = append(c.layerStage, n)
				}
			}
		}
	}
	return c, nil
}

// onbuildTriggers parses the ONBUILD instructions among a base stage's
// commands: they run first in a stage built FROM it, in Kaniko and BuildKit
// alike.
func onbuildTriggers(base []instructions.Command) ([]instructions.Command, error) {
	var triggers []instructions.Command
	for _, cmd := range base {
		onbuild, ok := cmd.(*instructions.OnbuildCommand)
		if !ok {
			continue
		}
		ast, err := parser.Parse(strings.NewReader(onbuild.Expression))
		if err != nil || len(ast.AST.Children) != 1 {
			return nil, fmt.Errorf("ONBUILD %s: %v", onbuild.Expression, err)
		}
		trigger, err := instructions.ParseInstruction(ast.AST.Children[0])
		if err != nil {
			return nil, fmt.Errorf("ONBUILD %s: %w", onbuild.Expression, err)
		}
		if c, ok := trigger.(instructions.Command); ok {
			triggers = append(triggers, c)
		}
	}
	return triggers, nil
}

// volumeDir is the COPY compat.WithVolumeDirs inserted after a VOLUME to
// create path (as written); args are the ARG values it may use (KEY=VALUE).
type volumeDir struct {
	*instructions.VolumeCommand
	path string
	args []string
}

// declareArgs adds an ARG instruction's values to args: the --build-arg
// value, else the default expanded with the ARGs before it. A bare ARG
// without a value leaves args as they are.
func declareArgs(args []string, cmd *instructions.ArgCommand, given map[string]string, lex *shell.Lex) []string {
	for _, kv := range cmd.Args {
		value, ok := given[kv.Key]
		if !ok && kv.Value != nil {
			value, _, _ = lex.ProcessWord(*kv.Value, shell.EnvsFromSlice(args))
			ok = true
		}
		if ok {
			args = append(args, kv.Key+"="+value)
		}
	}
	return args
}

// historyPlan classifies BuildKit's history: entries before Start belong to
// the base image; from Start on every entry is BuildKit's own. Kaniko maps
// the history index of each BuildKit layer-bearing instruction to Kaniko's
// created_by.
type historyPlan struct {
	Start  int
	Kaniko map[int]string
	// Command maps the entries aligned with the Dockerfile to the index
	// of their instruction in commands.
	Command map[int]int
}

// planHistory aligns the Dockerfile's layer instructions with BuildKit's
// trailing instruction entries, from the end (base images and ONBUILD
// triggers only ever add entries in front). Entries that do not line up
// keep a text derived from BuildKit's own.
func planHistory(history []v1.History, commands []string) historyPlan {
	plan := historyPlan{Start: len(history), Kaniko: map[int]string{}, Command: map[int]int{}}
	for plan.Start > 0 && history[plan.Start-1].Comment == buildkitComment {
		plan.Start--
	}
	next := len(commands) - 1
	for i := len(history) - 1; i >= plan.Start; i-- {
		keyword := instructionOf(history[i].CreatedBy)
		if !layerInstructions[keyword] {
			continue
		}
		if next >= 0 && instructionOf(commands[next]) == keyword {
			plan.Kaniko[i] = commands[next]
			plan.Command[i] = next
			next--
			continue
		}
		next = -1 // misaligned: stop trusting the Dockerfile
		plan.Kaniko[i] = createdByFromBuildkit(history[i].CreatedBy)
	}
	return plan
}

func instructionOf(text string) string {
	word, _, _ := strings.Cut(strings.TrimSpace(text), " ")
	return strings.ToUpper(word)
}

// createdByFromBuildkit turns BuildKit's history text into an instruction
// without the build-arg prefix (`RUN |2 A=1 B=2 ...`), which would leak
// build-arg values, and without the "# buildkit" marker.
func createdByFromBuildkit(text string) string {
	text = strings.TrimSuffix(text, " # buildkit")
	keyword, rest, _ := strings.Cut(text, " ")
	if keyword != "RUN" {
		return text
	}
	if !strings.HasPrefix(rest, "|") {
		// An ONBUILD trigger's RUN: Kaniko writes the trigger as written.
		return strings.TrimSpace(keyword + " " + strings.TrimPrefix(rest, "/bin/sh -c "))
	}
	count, rest, _ := strings.Cut(rest[1:], " ")
	var n int
	if _, err := fmt.Sscanf(count, "%d", &n); err != nil {
		return keyword
	}
	for ; n > 0; n-- {
		// A value with spaces cannot be told apart from the command:
		// better a short text than a leaked value.
		if _, after, ok := strings.Cut(rest, " "); ok {
			rest = after
		} else {
			rest = ""
		}
	}
	rest = strings.TrimPrefix(rest, "/bin/sh -c ")
	return strings.TrimSpace(keyword + " " + rest)
}
