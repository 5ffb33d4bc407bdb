package compat

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
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
	added bool             // kiln's own instruction, not the user's
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
// its stage names and step counts are the ones BuildKit shows) and the
// user's Dockerfile, whose texts the steps take where kiln rewrote an
// instruction; written may be nil.
func NewStepNames(staged, written []byte) (*StepNames, error) {
	result, stages, _, err := parseInstructions(staged)
	if err != nil {
		return nil, err
	}
	userText, added := writtenTexts(staged, written)
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
				step := writtenStep{text: text, shown: []*regexp.Regexp{shownPattern(lex, text), shownPattern(raw, text)}}
				if loc := cmd.Location(); len(loc) > 0 {
					line := loc[0].Start.Line
					step.added = added[line]
					if userText[line] != "" {
						step.text = userText[line]
					}
				}
				stage.steps = append(stage.steps, step)
			}
		}
		s.stages = append(s.stages, stage)
	}
	if len(s.stages) == 1 {
		s.stages[0].label = ""
	}
	return s, nil
}

// writtenTexts maps the first line of each instruction of staged to the
// text of the user's instruction on the line it came from (LineOrigins),
// and tells the lines kiln added.
func writtenTexts(staged, written []byte) (texts map[int]string, added map[int]bool) {
	if written == nil {
		return nil, nil
	}
	_, stages, _, err := parseInstructions(written)
	if err != nil {
		return nil, nil
	}
	byLine := map[int]string{}
	for _, st := range stages {
		for _, cmd := range st.Commands {
			if loc := cmd.Location(); len(loc) > 0 {
				byLine[loc[0].Start.Line] = cmd.(fmt.Stringer).String()
			}
		}
	}
	texts, added = map[int]string{}, map[int]bool{}
	for line, origin := range LineOrigins(written, staged) {
		switch {
		case origin == 0:
			added[line+1] = true
		case byLine[origin] != "":
			texts[line+1] = byLine[origin]
		}
	}
	return texts, added
}

// LineOrigins gives, for each line of rewritten, the number of the line of
// original it came from, 0 for a line kiln added. kiln's rewrites edit
// lines in place or add whole lines after the ones they follow, so lines
// equal in both anchor the alignment (longest common subsequence) and the
// lines between two anchors pair up in order, the surplus of rewritten
// being added lines.
func LineOrigins(original, rewritten []byte) []int {
	a := strings.Split(string(original), "\n")
	b := strings.Split(string(rewritten), "\n")
	origins := make([]int, len(b))
	if len(a)*len(b) > 1<<24 { // too big to align: line for line
		for i := range b {
			if i < len(a) {
				origins[i] = i + 1
			}
		}
		return origins
	}
	// common[i][j]: longest common subsequence of a[i:] and b[j:].
	common := make([][]int32, len(a)+1)
	for i := range common {
		common[i] = make([]int32, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				common[i][j] = common[i+1][j+1] + 1
			} else {
				common[i][j] = max(common[i+1][j], common[i][j+1])
			}
		}
	}
	i, j := 0, 0
	gapA, gapB := 0, 0 // where the unmatched run started in a and b
	pair := func(endA, endB int) {
		for k, origin := range pairEdited(a[gapA:endA], b[gapB:endB]) {
			if origin > 0 {
				origins[gapB+k] = gapA + origin
			}
		}
	}
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			pair(i, j)
			origins[j] = i + 1
			i, j = i+1, j+1
			gapA, gapB = i, j
		case common[i+1][j] >= common[i][j+1]:
			i++
		default:
			j++
		}
	}
	pair(len(a), len(b))
	return origins
}

// pairEdited pairs the lines of a run kiln edited (a: the user's, b: as
// rewritten, with any added lines) in order, each with the line it is most
// alike; it gives each line of b its line in a
// counted from 1, 0 for an added one.
func pairEdited(a, b []string) []int {
	best := make([][]int, len(a)+1)
	for i := range best {
		best[i] = make([]int, len(b)+1)
	}
	score := func(i, j int) int { return 1 + alike(a[i], b[j]) } // pairing beats leaving out
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			best[i][j] = max(best[i+1][j], best[i][j+1], best[i+1][j+1]+score(i, j))
		}
	}
	pairs := make([]int, len(b))
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch best[i][j] {
		case best[i+1][j+1] + score(i, j):
			pairs[j] = i + 1
			i, j = i+1, j+1
		case best[i][j+1]:
			j++
		default:
			i++
		}
	}
	return pairs
}

// alike is the length of the common prefix of two lines (an edit keeps
// the instruction's keyword, and a continuation line no keyword).
func alike(x, y string) int {
	n := 0
	for n < len(x) && n < len(y) && x[n] == y[n] {
		n++
	}
	return n
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
			c := stepCandidate{step: step, distance: abs(i + 1 + st.fromCount - number)}
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
	if best.added {
		// An internal step, as Kaniko has none like it: no step line.
		return "[internal] kiln: " + best.text, true
	}
	return name[:len(name)-len(shown)] + best.text, true
}

type stepCandidate struct {
	step     writtenStep
	distance int // from the step number BuildKit gave
}

func closest(cs []stepCandidate) (writtenStep, bool) {
	if len(cs) == 0 {
		return writtenStep{}, false
	}
	best := cs[0]
	for _, c := range cs[1:] {
		if c.distance < best.distance {
			best = c
		}
	}
	return best.step, true
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
