package compat

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// Kaniko keeps one set of declared ARGs for the whole build: a stage starts
// with every ARG the stages Kaniko built before it declared, with their
// values, and `ARG NAME` without a default keeps a declared value rather
// than taking the meta ARG's. BuildKit (like Docker) starts each stage with
// none. Dockerfiles written for Kaniko rely on this, so kiln carries the
// values over by rewriting the Dockerfile copy BuildKit reads.

// carriedArg is one ARG Kaniko has declared.
type carriedArg struct {
	key   string
	value string
	set   bool // false: declared without any value (Kaniko sees "")
	known bool // false: the value uses a variable the Dockerfile does not set
}

// WithKanikoArgScope rewrites a Dockerfile so that BuildKit sees the ARG
// values Kaniko sees when it builds the stages in order (stage indexes, as
// Kaniko builds them): after the FROM line of every stage but the first it
// declares the ARGs earlier stages left (one `ARG` line, the only lines it
// adds), and it gives `ARG NAME` lines of meta ARGs Kaniko has already
// declared their Kaniko value in place. given holds the --build-arg values
// (KEY=VALUE), which win in both builders. notes lists, one line each, what
// it carried and what it could not (a value taken from a base image's ENV).
func WithKanikoArgScope(dt []byte, order []int, given []string) (rewritten []byte, changed bool, notes []string, err error) {
	result, stages, metaCmds, err := parseInstructions(dt)
	if err != nil {
		return nil, false, nil, err
	}
	lex := shell.NewLex(result.EscapeToken)
	givenValues := map[string]string{}
	for _, kv := range given {
		k, v, _ := strings.Cut(kv, "=")
		givenValues[k] = v
	}
	meta := metaArgValues(lex, metaCmds, givenValues)

	ed := lineEditor{lines: strings.SplitAfter(string(dt), "\n")}
	var declared []carriedArg
	ends := map[int]envScope{} // what each built stage's ENV left, for stages based on it
	for pos, idx := range order {
		if idx < 0 || idx >= len(stages) {
			return nil, false, nil, fmt.Errorf("stage %d out of range", idx)
		}
		st := stages[idx]
		if pos > 0 && len(declared) > 0 {
			line, carried, skipped := argLine(declared, givenValues, meta, result.EscapeToken)
			if line != "" {
				ed.insertAfter(endLine(st.Location), line)
				notes = append(notes, fmt.Sprintf("stage %s sees ARG %s from earlier stages, as in Kaniko", stageLabelOf(st, idx), strings.Join(carried, ", ")))
			}
			for _, k := range skipped {
				notes = append(notes, fmt.Sprintf("stage %s: ARG %s from an earlier stage is not carried over as Kaniko would: its value uses the base image's environment", stageLabelOf(st, idx), k))
			}
		}
		env := baseEnv(st, stages, ends)
		expand := func(word string) (string, bool) {
			vars := env.vars()
			for _, a := range declared {
				if v, known := resolvedArg(a, givenValues, meta); known && !hasKey(vars, a.key) {
					vars = append(vars, a.key+"="+v)
				}
			}
			res, err := lex.ProcessWordWithMatches(word, shell.EnvsFromSlice(vars))
			if err != nil {
				return "", false
			}
			for name := range res.Matched {
				if env.unknown[name] {
					return res.Result, false
				}
			}
			for name := range res.Unmatched {
				// Unset for Kaniko too only when nothing else could set it.
				if env.open || env.unknown[name] || isDeclared(declared, name) {
					return res.Result, false
				}
			}
			return res.Result, true
		}
		for _, c := range st.Commands {
			switch c := c.(type) {
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					value, known := expand(kv.Value)
					env.set(kv.Key, value, known)
				}
			case *instructions.ArgCommand:
				var inPlace bool
				for _, arg := range c.Args {
					if arg.Value != nil {
						value, known := expand(*arg.Value)
						declared = declare(declared, carriedArg{key: arg.Key, value: value, set: true, known: known})
						continue
					}
					if isDeclared(declared, arg.Key) {
						// Kaniko keeps the declared value; BuildKit takes the meta ARG's.
						_, isMeta := meta[arg.Key]
						_, isGiven := givenValues[arg.Key]
						inPlace = inPlace || (isMeta && !isGiven)
						continue
					}
					if v, ok := meta[arg.Key]; ok {
						declared = declare(declared, carriedArg{key: arg.Key, value: v, set: true, known: true})
					} else {
						declared = declare(declared, carriedArg{key: arg.Key, known: true})
					}
				}
				if inPlace {
					if note := ed.replaceArg(c, declared, givenValues, meta, result.EscapeToken); note != "" {
						notes = append(notes, note)
					}
				}
			}
		}
		ends[idx] = env
	}
	if !ed.changed {
		return dt, false, notes, nil
	}
	return []byte(ed.String()), true, notes, nil
}

// envScope is the ENV a stage's instructions expand with, as far as the
// Dockerfile tells: open when the base image's ENV (not read here) may set
// more; unknown holds variables set from such values.
type envScope struct {
	values  map[string]string
	unknown map[string]bool
	open    bool
}

func (s *envScope) set(key, value string, known bool) {
	if s.values == nil {
		s.values, s.unknown = map[string]string{}, map[string]bool{}
	}
	s.values[key] = value
	s.unknown[key] = !known
}

func (s envScope) vars() []string {
	var vars []string
	for k, v := range s.values {
		vars = append(vars, k+"="+v)
	}
	return vars
}

func (s envScope) clone() envScope {
	c := envScope{open: s.open}
	for k, v := range s.values {
		c.set(k, v, !s.unknown[k])
	}
	return c
}

// metaArgValues are the meta ARGs' values (defaults expanded with earlier
// meta ARGs, --build-arg winning); an ARG without any value is absent.
func metaArgValues(lex *shell.Lex, cmds []instructions.ArgCommand, given map[string]string) map[string]string {
	values := map[string]string{}
	var scope []string
	for _, cmd := range cmds {
		for _, arg := range cmd.Args {
			v, ok := given[arg.Key]
			if !ok {
				if arg.Value == nil {
					continue
				}
				v, _, _ = lex.ProcessWord(*arg.Value, shell.EnvsFromSlice(scope))
			}
			values[arg.Key] = v
			scope = append(scope, arg.Key+"="+v)
		}
	}
	return values
}

// baseEnv is what a stage's instructions can expand before its own ENV:
// the ENV its base stage left, or an open scope for an image.
func baseEnv(st instructions.Stage, stages []instructions.Stage, ends map[int]envScope) envScope {
	for i, s := range stages {
		if s.Name != "" && strings.EqualFold(s.Name, st.BaseName) {
			if end, built := ends[i]; built {
				return end.clone()
			}
			return envScope{open: true}
		}
	}
	return envScope{open: !strings.EqualFold(st.BaseName, "scratch")}
}

// resolvedArg is the value Kaniko substitutes for a declared ARG.
func resolvedArg(a carriedArg, given, meta map[string]string) (string, bool) {
	if v, ok := given[a.key]; ok {
		return v, true
	}
	if a.set {
		return a.value, a.known
	}
	if v, ok := meta[a.key]; ok {
		return v, true
	}
	return "", true
}

// argLine declares the carried ARGs in one instruction. A --build-arg one
// needs no value (BuildKit applies it); one with an unknown value is left out.
func argLine(declared []carriedArg, given, meta map[string]string, escape rune) (line string, carried, skipped []string) {
	var parts []string
	for _, a := range declared {
		if _, ok := given[a.key]; ok {
			parts = append(parts, a.key)
			carried = append(carried, a.key)
			continue
		}
		v, known := resolvedArg(a, given, meta)
		if !known {
			skipped = append(skipped, a.key)
			continue
		}
		parts = append(parts, a.key+"="+quoteWord(v, escape))
		carried = append(carried, a.key)
	}
	if len(parts) == 0 {
		return "", nil, skipped
	}
	return "ARG " + strings.Join(parts, " "), carried, skipped
}

// quoteWord quotes v so that the Dockerfile word parser yields it unchanged:
// single quotes (no expansion), an escaped quote for each ' inside.
func quoteWord(v string, escape rune) string {
	return "'" + strings.ReplaceAll(v, "'", "'"+string(escape)+"''") + "'"
}

func declare(declared []carriedArg, a carriedArg) []carriedArg {
	if i := indexOfArg(declared, a.key); i >= 0 {
		declared[i] = a
		return declared
	}
	return append(declared, a)
}

func indexOfArg(declared []carriedArg, key string) int {
	return slices.IndexFunc(declared, func(a carriedArg) bool { return a.key == key })
}

func isDeclared(declared []carriedArg, key string) bool { return indexOfArg(declared, key) >= 0 }

func hasKey(vars []string, key string) bool {
	return slices.ContainsFunc(vars, func(kv string) bool { return strings.HasPrefix(kv, key+"=") })
}

func endLine(loc []parser.Range) int {
	if len(loc) == 0 {
		return 0
	}
	return loc[len(loc)-1].End.Line
}

func stageLabelOf(st instructions.Stage, idx int) string {
	if st.Name != "" {
		return st.Name
	}
	return fmt.Sprint(idx)
}

// replaceArg rewrites a one-line ARG instruction without defaults so that
// each meta ARG Kaniko has declared gets its Kaniko value.
func (e *lineEditor) replaceArg(c *instructions.ArgCommand, declared []carriedArg, given, meta map[string]string, escape rune) string {
	loc := c.Location()
	oneLine := len(loc) == 1 && loc[0].Start.Line == loc[0].End.Line && loc[0].Start.Line <= len(e.lines)
	withDefault := slices.ContainsFunc(c.Args, func(a instructions.KeyValuePairOptional) bool { return a.Value != nil })
	if !oneLine || withDefault {
		return fmt.Sprintf("line %d: ARG takes the meta ARG's value where Kaniko keeps the value an earlier stage declared: declare each such ARG alone on one line", endLine(loc))
	}
	var parts []string
	for _, arg := range c.Args {
		part := arg.Key
		if i := indexOfArg(declared, arg.Key); i >= 0 {
			_, isMeta := meta[arg.Key]
			_, isGiven := given[arg.Key]
			if v, known := resolvedArg(declared[i], given, meta); known && isMeta && !isGiven {
				part += "=" + quoteWord(v, escape)
			}
		}
		parts = append(parts, part)
	}
	n := loc[0].Start.Line - 1
	nl := ""
	if strings.HasSuffix(e.lines[n], "\n") {
		nl = "\n"
	}
	e.lines[n] = "ARG " + strings.Join(parts, " ") + nl
	e.changed = true
	return ""
}

// parseInstructions parses a Dockerfile into its stages and meta ARGs
// without linting.
func parseInstructions(dt []byte) (*parser.Result, []instructions.Stage, []instructions.ArgCommand, error) {
	result, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil, nil, nil, err
	}
	stages, metaArgs, err := instructions.Parse(result.AST, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	return result, stages, metaArgs, nil
}
