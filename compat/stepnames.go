package compat

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// StepNames maps BuildKit's step names back to the instructions as written.
// BuildKit names a step after its instruction with ARG and ENV values
// substituted ("[2/3] RUN curl -H token-value …"); Kaniko logs the
// instruction as written ("RUN curl -H $TOKEN …"), so build-arg values never
// reach its log through instruction lines.
type StepNames struct {
	stages []stepStage
}

type stepStage struct {
	label     string // BuildKit's prefix: the stage name, stage-N, or "" alone
	fromCount int    // 1 when BuildKit counts the FROM as the stage's first step
	steps     []writtenStep
}

// writtenStep is an instruction BuildKit shows as a step.
type writtenStep struct {
	text  string           // as written (instructions.Command.String)
	shown []*regexp.Regexp // BuildKit's name for it, any substitution matching
}

func (w writtenStep) matches(name string) bool {
	for _, re := range w.shown {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

// NewStepNames reads the Dockerfile BuildKit is given (kiln's staged copy:
// its stage names and step counts are the ones BuildKit shows).
func NewStepNames(dockerfile []byte) (*StepNames, error) {
	result, err := parser.Parse(bytes.NewReader(dockerfile))
	if err != nil {
		return nil, err
	}
	stages, _, err := instructions.Parse(result.AST, nil)
	if err != nil {
		return nil, err
	}
	// BuildKit substitutes RUN's variables keeping quotes and escapes, the
	// other instructions' the shell way.
	lex := shell.NewLex(result.EscapeToken)
	raw := shell.NewLex(result.EscapeToken)
	raw.RawQuotes, raw.RawEscapes = true, true
	names := map[string]bool{}
	s := &StepNames{}
	for i, st := range stages {
		stage := stepStage{label: st.Name}
		if stage.label == "" {
			stage.label = fmt.Sprintf("stage-%d", i)
		}
		if !strings.EqualFold(st.BaseName, "scratch") && !names[strings.ToLower(st.BaseName)] {
			stage.fromCount = 1
		}
		if st.Name != "" {
			names[strings.ToLower(st.Name)] = true
		}
		names[strconv.Itoa(i)] = true
		for _, cmd := range st.Commands {
			switch cmd.(type) {
			case *instructions.AddCommand, *instructions.CopyCommand, *instructions.RunCommand, *instructions.WorkdirCommand:
				text := cmd.(fmt.Stringer).String()
				stage.steps = append(stage.steps, writtenStep{text: text, shown: []*regexp.Regexp{shownPattern(lex, text), shownPattern(raw, text)}})
			}
		}
		s.stages = append(s.stages, stage)
	}
	if len(s.stages) == 1 {
		s.stages[0].label = ""
	}
	return s, nil
}

// substituted stands for every variable while computing how BuildKit shows
// an instruction; it cannot occur in a Dockerfile line.
const substituted = "\x00"

type anyValue struct{}

func (anyValue) Get(string) (string, bool) { return substituted, true }
func (anyValue) Keys() []string            { return nil }

// shownPattern matches BuildKit's name for the instruction written as text,
// whatever values its variables had.
func shownPattern(lex *shell.Lex, text string) *regexp.Regexp {
	shown, _, err := lex.ProcessWord(text, anyValue{})
	if err != nil {
		shown = text
	}
	parts := strings.Split(upperFirstWord(shown), substituted)
	for i, p := range parts {
		// A regexp must be UTF-8, and reads each bad byte of a name as
		// U+FFFD, as converting to runes does.
		parts[i] = regexp.QuoteMeta(string([]rune(p)))
	}
	return regexp.MustCompile(`^(?s:` + strings.Join(parts, `.*`) + `)$`)
}

func upperFirstWord(s string) string {
	word, rest, found := strings.Cut(s, " ")
	if !found {
		return strings.ToUpper(word)
	}
	return strings.ToUpper(word) + " " + rest
}

// BuildKit's step prefix: an optional platform, the stage label, the
// (space-padded) step number and the count.
var stepPrefix = regexp.MustCompile(`^\[([^\]]*?)\s*(\d+)/(\d+)\] (?s:(.*))$`)

// Written returns BuildKit's step name with the instruction as written
// (the "[stage n/m] " prefix kept), and false when name is no step of this
// Dockerfile (internal steps, ONBUILD triggers of a base image).
func (s *StepNames) Written(name string) (string, bool) {
	m := stepPrefix.FindStringSubmatch(name)
	if s == nil || m == nil {
		return "", false
	}
	labels := strings.Fields(m[1])
	number, _ := strconv.Atoi(m[2])
	shown := m[4]
	var inStage, elsewhere []stepCandidate
	for _, st := range s.stages {
		own := st.label == "" && len(labels) <= 1 || len(labels) > 0 && labels[len(labels)-1] == st.label
		for i, step := range st.steps {
			if !step.matches(shown) {
				continue
			}
			c := stepCandidate{text: step.text, distance: abs(i + 1 + st.fromCount - number)}
			if own {
				inStage = append(inStage, c)
			} else {
				elsewhere = append(elsewhere, c)
			}
		}
	}
	best, ok := closest(inStage)
	if !ok {
		best, ok = closest(elsewhere)
	}
	if !ok {
		return "", false
	}
	return name[:len(name)-len(shown)] + best, true
}

type stepCandidate struct {
	text     string
	distance int // from the step number BuildKit gave
}

func closest(cs []stepCandidate) (string, bool) {
	if len(cs) == 0 {
		return "", false
	}
	best := cs[0]
	for _, c := range cs[1:] {
		if c.distance < best.distance {
			best = c
		}
	}
	return best.text, true
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
