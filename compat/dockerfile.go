package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/kilnbuild/kiln/flagmap"
)

// MissingDockerfileError is Kaniko's text when no Dockerfile is found.
const MissingDockerfileError = "please provide a valid path to a Dockerfile within the build context with --dockerfile"

var dockerfileURL = regexp.MustCompile(`^https?://`)

// IsDockerfileURL reports whether --dockerfile names a URL Kaniko downloads.
func IsDockerfileURL(path string) bool { return dockerfileURL.MatchString(path) }

// ResolveDockerfile finds --dockerfile the way Kaniko does: a URL stays a
// URL, then the path relative to the working directory, then relative to
// the context directory. The result is absolute (or the URL).
func ResolveDockerfile(opts *flagmap.Options, ctxDir string) (string, error) {
	given := opts.Dockerfile
	if given == "" {
		given = "Dockerfile"
	}
	if IsDockerfileURL(given) {
		return given, nil
	}
	for _, candidate := range []string{given, filepath.Join(ctxDir, given)} {
		fi, err := os.Stat(candidate)
		if err != nil {
			continue
		}
		abs, err := filepath.Abs(candidate)
		if err != nil {
			return "", fmt.Errorf("--dockerfile %s: %v", given, err)
		}
		if fi.IsDir() {
			return "", fmt.Errorf("--dockerfile %s: %s is a directory; name the file itself, e.g. --dockerfile=%s", given, abs, filepath.Join(given, "Dockerfile"))
		}
		return abs, nil
	}
	return "", fmt.Errorf("--dockerfile %s: not found in the working directory or in the context %s: %s", given, ctxDir, MissingDockerfileError)
}

// DockerignorePath is the ignore file Kaniko applies: <Dockerfile>.dockerignore
// next to the Dockerfile when it exists, else <context>/.dockerignore. ok is
// false when neither exists.
func DockerignorePath(dockerfile, ctxDir string) (path string, ok bool) {
	if !IsDockerfileURL(dockerfile) && fileExists(dockerfile+".dockerignore") {
		return dockerfile + ".dockerignore", true
	}
	path = filepath.Join(ctxDir, ".dockerignore")
	return path, fileExists(path)
}

// Dockerfile is what kiln needs to know about a Dockerfile before building.
type Dockerfile struct {
	Path     string
	Syntax   string   // the "# syntax=" frontend image, or ""
	MetaArgs []string // ARG names declared before the first FROM
	Stages   []Stage
	Warnings []string // parser warnings, one line each
	// unknownFlag is the first flag Kaniko's parser does not know, or nil.
	unknownFlag error
}

// Stage is one FROM section.
type Stage struct {
	Index    int
	Name     string // alias from "AS name", lower-cased by the parser, or ""
	From     string // FROM value as written
	Base     string // FROM value expanded as Kaniko expands it (kanikoFromScope)
	Platform string // --platform as written, or ""
	// BaseStage is the index of the earlier stage used as base, or -1.
	BaseStage int
	// CopyFrom lists COPY --from values that are not stages (images).
	CopyFrom []string
	// Needs lists the earlier stages this one uses (FROM or COPY --from).
	Needs []int
	// copyFroms is each COPY's --from value as written, "" without one
	// (Kaniko's stage selection reads them so).
	copyFroms []string
	// refused is the first instruction Kaniko fails on (an EXPOSE protocol,
	// a --chmod value), or nil.
	refused error
	// argEdits are, by the ordinal of the stage's ARG instruction, the ARG
	// names to write differently for BuildKit (see argEdit).
	argEdits map[int]map[string]string
	// addSources are the ADD sources without variables or URLs, as written.
	addSources []addSource
	// buildkitDiffers: BuildKit expands the FROM value otherwise than
	// Kaniko (Base), or fails on it.
	buildkitDiffers bool
}

// addSource is one local ADD source and its instruction's line.
type addSource struct {
	line int
	path string
}

// argEdit records, for an ARG name as written, the name BuildKit must see:
// its expansion when written with variables (Kaniko expands it, BuildKit
// takes it literally), or "" when an ENV of the stage set it before
// (Kaniko's ENV always wins over an ARG, BuildKit's later ARG wins).
func argEdit(edits map[int]map[string]string, ordinal int, written, name string) map[int]map[string]string {
	if edits == nil {
		edits = map[int]map[string]string{}
	}
	if edits[ordinal] == nil {
		edits[ordinal] = map[string]string{}
	}
	edits[ordinal][written] = name
	return edits
}

// IsScratch reports whether the stage starts from the empty image.
func (s Stage) IsScratch() bool { return strings.EqualFold(s.Base, "scratch") }

// BaseImages lists the distinct registry images the Dockerfile pulls, in
// order of first use: FROM images and COPY --from images.
func (d *Dockerfile) BaseImages() []string {
	seen := map[string]bool{}
	var images []string
	add := func(ref string) {
		if ref != "" && !seen[ref] {
			seen[ref] = true
			images = append(images, ref)
		}
	}
	for _, s := range d.Stages {
		if s.BaseStage < 0 && !s.IsScratch() {
			add(s.Base)
		}
		for _, ref := range s.CopyFrom {
			add(ref)
		}
	}
	return images
}

// TargetStage finds --target (case-insensitive, like Kaniko); an empty
// target is the last stage.
func (d *Dockerfile) TargetStage(target string) (Stage, error) {
	if len(d.Stages) == 0 {
		return Stage{}, fmt.Errorf("%s: no FROM instruction: a Dockerfile must start a stage with FROM", d.Path)
	}
	names := make([]string, len(d.Stages))
	for i, s := range d.Stages {
		names[i] = s.Name
	}
	if i := targetIndex(names, target); i >= 0 {
		return d.Stages[i], nil
	}
	return Stage{}, fmt.Errorf("--target %s: no stage named %q in %s; use one of the names given with FROM … AS <name>", target, target, d.Path)
}

// targetIndex is the index of the stage --target names (its name in any
// case, as Kaniko matches it), the last stage without one; -1 when no
// stage has that name.
func targetIndex(names []string, target string) int {
	if target == "" {
		return len(names) - 1
	}
	for i, name := range names {
		if strings.EqualFold(name, target) {
			return i
		}
	}
	return -1
}

// ReadDockerfile reads a local Dockerfile or downloads a --dockerfile URL.
func ReadDockerfile(ctx context.Context, path string) ([]byte, error) {
	if !IsDockerfileURL(path) {
		dt, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--dockerfile %s: %v", path, err)
		}
		return dt, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, fmt.Errorf("--dockerfile %s: %v", path, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("--dockerfile %s: download failed: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("--dockerfile %s: download failed: HTTP %s", path, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// ParseDockerfile parses a Dockerfile (path or URL) with BuildKit's parser
// and expands each FROM with the meta ARGs and the --build-arg values.
func ParseDockerfile(path string, buildArgs []string) (*Dockerfile, error) {
	dt, err := ReadDockerfile(context.Background(), path)
	if err != nil {
		return nil, err
	}
	return ParseDockerfileBytes(path, dt, buildArgs)
}

// ParseDockerfileBytes is ParseDockerfile on contents already read; path
// only names the file in errors.
func ParseDockerfileBytes(path string, dt []byte, buildArgs []string) (*Dockerfile, error) {
	result, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		if line, ok := overlongLine(dt); ok {
			return nil, fmt.Errorf("%s: line %d is longer than the %d bytes BuildKit's parser reads in one line: split it with \\ continuations, or move the data into a file of the context", path, line, maxLineLength)
		}
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if err := checkInstructionBytes(path, result.AST); err != nil {
		return nil, err
	}
	df := &Dockerfile{Path: path, unknownFlag: unknownToKaniko(path, result.AST)}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		df.Warnings = append(df.Warnings, fmt.Sprintf("line %d: %s: %s", line, rule, msg))
	}})
	stages, metaArgs, err := instructions.Parse(result.AST, lint)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if syntax, _, _, ok := parser.DetectSyntax(dt); ok {
		df.Syntax = syntax
	}
	for _, w := range result.Warnings {
		df.Warnings = append(df.Warnings, w.Short)
	}

	given := map[string]string{}
	for _, kv := range buildArgs {
		k, v, _ := strings.Cut(kv, "=")
		given[k] = v
	}
	lex := shell.NewLex(result.EscapeToken)
	var scope []string // KEY=VALUE visible to FROM lines
	for _, cmd := range metaArgs {
		for _, arg := range cmd.Args {
			df.MetaArgs = append(df.MetaArgs, arg.Key)
			value, isGiven := given[arg.Key]
			if !isGiven {
				if arg.Value == nil {
					continue
				}
				// Defaults may refer to earlier meta ARGs.
				expanded, _, err := lex.ProcessWord(*arg.Value, shell.EnvsFromSlice(scope))
				if err != nil {
					return nil, fmt.Errorf("%s: ARG %s: %v", path, arg.Key, err)
				}
				value = expanded
			}
			scope = append(scope, arg.Key+"="+value)
		}
	}
	env := shell.EnvsFromSlice(scope)
	kanikoEnv, err := kanikoFromScope(lex, metaArgs, buildArgs)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}

	stageIndex := map[string]int{}
	stageEnv := make([][]string, len(stages)) // what each stage's ENV/ARG left set
	for i, st := range stages {
		base, _, err := lex.ProcessWord(st.BaseName, kanikoEnv)
		if err != nil {
			return nil, fmt.Errorf("%s: FROM %s: %v", path, st.BaseName, err)
		}
		stage := Stage{Index: i, Name: st.Name, From: st.BaseName, Base: base, Platform: st.Platform, BaseStage: -1}
		if bk, _, err := lex.ProcessWord(st.BaseName, env); err != nil || bk != base {
			stage.buildkitDiffers = true
			// Values left out: they may come from --build-arg.
			line := 0
			if len(st.Location) > 0 {
				line = st.Location[0].Start.Line
			}
			df.Warnings = append(df.Warnings, fmt.Sprintf("line %d: FROM %s is built on what Kaniko resolves it to, which docker build would not (Kaniko ignores an empty --build-arg there and sees undeclared ones)", line, st.BaseName))
		}
		if idx, ok := stageIndex[strings.ToLower(base)]; ok {
			stage.BaseStage = idx
			stage.Needs = append(stage.Needs, idx)
		}
		if base == "" {
			return nil, fmt.Errorf("%s: FROM %s expands to an empty image name; pass the ARG it uses with --build-arg", path, st.BaseName)
		}
		inherited := scope
		if stage.BaseStage >= 0 {
			inherited = stageEnv[stage.BaseStage]
		}
		stageEnv[i], stage.argEdits, stage.refused = scanStage(path, lex, st.Commands, inherited, given)
		for _, c := range st.Commands {
			if add, ok := c.(*instructions.AddCommand); ok {
				for _, src := range add.SourcePaths {
					if !strings.Contains(src, "$") && !strings.Contains(src, "://") {
						stage.addSources = append(stage.addSources, addSource{line: lineOf(add), path: src})
					}
				}
			}
			cp, ok := c.(*instructions.CopyCommand)
			if ok {
				stage.copyFroms = append(stage.copyFroms, cp.From)
			}
			if !ok || cp.From == "" {
				continue
			}
			if idx, isStage := stageIndex[strings.ToLower(cp.From)]; isStage {
				stage.Needs = append(stage.Needs, idx)
			} else if n, isIndex := stageNumber(cp.From, i); isIndex {
				stage.Needs = append(stage.Needs, n)
			} else {
				stage.CopyFrom = append(stage.CopyFrom, cp.From)
			}
		}
		df.Stages = append(df.Stages, stage)
		if st.Name != "" {
			stageIndex[strings.ToLower(st.Name)] = i
		}
	}
	return df, nil
}

// kanikoFromScope is what Kaniko expands FROM values with: each meta ARG's
// default, expanded with the defaults before it and every --build-arg (a
// --build-arg wins there, even empty), then every --build-arg with a
// non-empty value, declared or not, cut at its second "=" as Kaniko splits
// it. BuildKit instead lets an empty --build-arg win and ignores undeclared
// ones, so `FROM ${BASE:-x}` with --build-arg BASE= differs.
func kanikoFromScope(lex *shell.Lex, metaArgs []instructions.ArgCommand, buildArgs []string) (shell.EnvGetter, error) {
	var defaults []string
	for _, cmd := range metaArgs {
		for _, arg := range cmd.Args {
			if arg.Value == nil {
				continue
			}
			value, _, err := lex.ProcessWord(*arg.Value, shell.EnvsFromSlice(append(slices.Clip(defaults), buildArgs...)))
			if err != nil {
				return nil, fmt.Errorf("ARG %s: %v", arg.Key, err)
			}
			defaults = append(defaults, arg.Key+"="+value)
		}
	}
	scope := defaults
	for _, kv := range buildArgs {
		if parts := strings.Split(kv, "="); len(parts) > 1 && parts[1] != "" {
			scope = append(scope, parts[0]+"="+parts[1])
		}
	}
	return shell.EnvsFromSlice(scope), nil
}

// maxLineLength is BuildKit's parser limit on one physical line, which it
// reports without the line number.
const maxLineLength = 65535

// overlongLine finds the first line longer than maxLineLength.
func overlongLine(dt []byte) (line int, found bool) {
	for n, text := range bytes.Split(dt, []byte("\n")) {
		if len(text) > maxLineLength {
			return n + 1, true
		}
	}
	return 0, false
}

// checkInstructionBytes refuses instructions BuildKit cannot carry: it
// sends them as protobuf strings, so a byte that is not UTF-8 fails the
// build with "string field contains invalid UTF-8" and a NUL byte with an
// rpc error, neither naming the line.
func checkInstructionBytes(path string, ast *parser.Node) error {
	for _, node := range ast.Children {
		texts := []string{node.Original}
		for _, h := range node.Heredocs {
			texts = append(texts, h.Content)
		}
		// The instruction as written: upper-casing would hide bad bytes.
		instruction, _, _ := strings.Cut(strings.TrimSpace(node.Original), " ")
		instruction = flagmap.Printable(instruction)
		for _, text := range texts {
			switch {
			case !utf8.ValidString(text):
				return fmt.Errorf("%s: line %d: %s has bytes that are not UTF-8, which BuildKit cannot carry: write them as escapes (printf '\\377') or save the file as UTF-8", path, node.StartLine, instruction)
			case strings.ContainsRune(text, 0):
				return fmt.Errorf("%s: line %d: %s contains a NUL byte: remove it (a file saved as UTF-16 reads so; save it as UTF-8)", path, node.StartLine, instruction)
			}
		}
	}
	return nil
}

// scanStage finds the stage's first instruction Kaniko fails on: an EXPOSE
// protocol other than "tcp" and "udp" (case-sensitive, after expanding
// variables) or a COPY/ADD --chmod that is not an octal number. It follows
// the stage's ENV and ARG values from scope (KEY=VALUE, Kaniko lets a stage
// see the meta ARGs); a value using a variable the Dockerfile does not set
// (e.g. from the base image's ENV) is not judged. It returns the scope at
// the end of the stage, and the ARG names BuildKit must see written
// differently (argEdit).
func scanStage(path string, lex *shell.Lex, cmds []instructions.Command, scope []string, given map[string]string) ([]string, map[int]map[string]string, error) {
	scope = slices.Clone(scope)
	expand := func(word string) (string, bool) {
		res, err := lex.ProcessWordWithMatches(word, shell.EnvsFromSlice(scope))
		return res.Result, err == nil && len(res.Unmatched) == 0
	}
	var invalid error
	var edits map[int]map[string]string
	envSet := map[string]bool{} // names an ENV of the stage set
	ordinal := -1
	for _, c := range cmds {
		switch c := c.(type) {
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				value, known := expand(kv.Value)
				scope = setVar(scope, kv.Key, value, known)
				envSet[kv.Key] = true
			}
		case *instructions.ArgCommand:
			ordinal++
			for _, arg := range c.Args {
				written := arg.Key
				if strings.Contains(arg.Key, "$") {
					res, err := lex.ProcessWordWithMatches(arg.Key, shell.EnvsFromSlice(scope))
					// A name made from a --build-arg value is not written
					// into the Dockerfile copy: values stay out of it.
					fromGiven := slices.ContainsFunc(slices.Collect(maps.Keys(res.Matched)), func(k string) bool { _, ok := given[k]; return ok })
					if err == nil && len(res.Unmatched) == 0 && res.Result != "" && !fromGiven {
						edits = argEdit(edits, ordinal, written, res.Result)
						arg.Key = res.Result
					}
				}
				if envSet[arg.Key] {
					edits = argEdit(edits, ordinal, written, "")
					continue
				}
				if value, ok := given[arg.Key]; ok {
					scope = setVar(scope, arg.Key, value, true)
				} else if arg.Value != nil {
					value, known := expand(*arg.Value)
					scope = setVar(scope, arg.Key, value, known)
				}
			}
		case *instructions.CopyCommand:
			if invalid == nil {
				invalid = checkChmod(path, c, c.Chmod, expand)
			}
		case *instructions.AddCommand:
			if invalid == nil {
				invalid = checkChmod(path, c, c.Chmod, expand)
			}
		case *instructions.ExposeCommand:
			for _, port := range c.Ports {
				if invalid != nil {
					break
				}
				expanded, known := expand(port)
				if !known {
					continue
				}
				_, protocol, ok := strings.Cut(expanded, "/")
				protocol, _, _ = strings.Cut(protocol, "/")
				if ok && protocol != "tcp" && protocol != "udp" {
					invalid = fmt.Errorf("%s: line %d: EXPOSE %s: invalid protocol: %s; Kaniko accepts only tcp and udp (lower case)", path, lineOf(c), port, protocol)
				}
			}
		}
	}
	return scope, edits, invalid
}

// setVar sets key in scope; an unknown value (one using a variable the
// Dockerfile does not set) removes key, so what uses it is not judged.
func setVar(scope []string, key, value string, known bool) []string {
	scope = slices.DeleteFunc(scope, func(kv string) bool { return strings.HasPrefix(kv, key+"=") })
	if known {
		scope = append(scope, key+"="+value)
	}
	return scope
}

func lineOf(c instructions.Command) int {
	if loc := c.Location(); len(loc) > 0 {
		return loc[0].Start.Line
	}
	return 0
}

// checkChmod refuses a --chmod value Kaniko cannot read: it parses the
// expanded value as an octal number only (symbolic modes such as u+x, and
// an empty expansion, fail its COPY/ADD).
func checkChmod(path string, c instructions.Command, chmod string, expand func(string) (string, bool)) error {
	if chmod == "" {
		return nil
	}
	mode, known := expand(chmod)
	if !known {
		return nil
	}
	if _, err := strconv.ParseUint(mode, 8, 32); err != nil {
		return fmt.Errorf("%s: line %d: %s --chmod=%s: Kaniko reads --chmod as an octal mode only (parsing value from chmod: %q): write it in octal, e.g. --chmod=755", path, lineOf(c), strings.ToUpper(c.Name()), chmod, mode)
	}
	return nil
}

// CheckStages fails the build where Kaniko would fail one of the stages it
// builds (KanikoStages): an EXPOSE with a protocol other than tcp or udp, a
// --chmod that is not octal.
func CheckStages(stages []Stage) error {
	for _, s := range stages {
		if s.refused != nil {
			return s.refused
		}
	}
	return nil
}

// flagsKanikoLacks are the flags BuildKit's parser accepts and Kaniko
// v1.23.2's (BuildKit v0.14.1's, without the labs features) does not.
var flagsKanikoLacks = map[string][]string{
	"add":  {"exclude", "unpack"},
	"copy": {"exclude", "parents"},
	"run":  {"device", "security"},
}

// unknownToKaniko returns Kaniko's parse error for the first instruction
// with a flag of flagsKanikoLacks, or nil. ONBUILD triggers are parsed
// only in the image that runs them.
func unknownToKaniko(path string, ast *parser.Node) error {
	for _, node := range ast.Children {
		lacks := flagsKanikoLacks[strings.ToLower(node.Value)]
		for _, flag := range node.Flags {
			name, _, _ := strings.Cut(strings.TrimPrefix(flag, "--"), "=")
			if slices.Contains(lacks, name) {
				return fmt.Errorf("%s: dockerfile parse error on line %d: unknown flag: %s: Kaniko v1.23.2 has no %s --%s; remove the flag", path, node.StartLine, name, strings.ToUpper(node.Value), name)
			}
		}
	}
	return nil
}

// CheckFlags fails the build where Kaniko's parser would: an instruction
// with a flag it does not know (flagsKanikoLacks).
func (d *Dockerfile) CheckFlags() error { return d.unknownFlag }

// stageNumber parses ref as the index of a stage before current.
func stageNumber(ref string, current int) (int, bool) {
	n, err := strconv.Atoi(ref)
	return n, err == nil && strconv.Itoa(n) == ref && n >= 0 && n < current
}

// KanikoStages lists the stages Kaniko v1.23.2 builds for --target (as
// given; "" is the last stage), in the order it builds them; the target
// comes last.
//
// Without --skip-unused-stages that is every stage up to the target. With
// it, Kaniko scans back from the target and keeps only the named stages the
// scan reaches, comparing names and references as strings:
//   - a stage is reached when it is the target, when its name is the
//     target's FROM value as written, or when a reached stage after it
//     refers to its name (a COPY --from value as written, or a FROM value);
//   - every COPY counts as a reference, one without --from as a reference
//     to "", and a numeric --from stands for that stage's name (so an
//     unnamed stage referred to by number is not kept);
//   - when the scan found no reference at all, all stages are built if
//     --target was not given, and only the target if it was.
func (d *Dockerfile) KanikoStages(target string, skipUnusedStages bool) ([]Stage, error) {
	last, err := d.TargetStage(target)
	if err != nil {
		return nil, err
	}
	upToTarget := slices.Clone(d.Stages[:last.Index+1])
	if !skipUnusedStages {
		return upToTarget, nil
	}
	referenced := map[string]bool{}
	reached := func(s Stage) bool {
		return s.Index == last.Index || (s.Name != "" && referenced[s.Name]) || s.Name == last.Base
	}
	for i := last.Index; i >= 0; i-- {
		s := d.Stages[i]
		if !reached(s) {
			continue
		}
		for _, from := range s.copyFroms {
			referenced[d.kanikoCopySource(from)] = true
		}
		if i != last.Index {
			referenced[s.Base] = true
		}
	}
	if len(referenced) == 0 {
		if target == "" {
			return upToTarget, nil
		}
		return []Stage{last}, nil
	}
	var kept []Stage
	for _, s := range d.Stages[:last.Index] {
		if s.Name != "" && (referenced[s.Name] || s.Name == last.Base) {
			kept = append(kept, s)
		}
	}
	return append(kept, last), nil
}

// kanikoCopySource is the stage name a COPY --from value stands for in
// Kaniko's selection: a number is that stage's name, anything else itself.
func (d *Dockerfile) kanikoCopySource(from string) string {
	if n, err := strconv.Atoi(from); err == nil && n >= 0 && n < len(d.Stages) {
		return d.Stages[n].Name
	}
	return from
}

// ExtraStages lists the stages of kaniko (KanikoStages, target last) that
// a BuildKit build of the target does not build, because the target does
// not need them: kiln builds those separately, so that their steps run and
// can fail the build as under Kaniko.
func (d *Dockerfile) ExtraStages(kaniko []Stage) []Stage {
	if len(kaniko) == 0 {
		return nil
	}
	needed := d.neededBy(kaniko[len(kaniko)-1])
	var extra []Stage
	for _, s := range kaniko {
		if !needed[s.Index] {
			extra = append(extra, s)
		}
	}
	return extra
}

// neededBy is the set of stages BuildKit builds for target: target and,
// transitively, the stages it uses.
func (d *Dockerfile) neededBy(target Stage) map[int]bool {
	needed := map[int]bool{target.Index: true}
	for i := target.Index; i >= 0; i-- {
		if needed[i] {
			for _, n := range d.Stages[i].Needs {
				needed[n] = true
			}
		}
	}
	return needed
}

// TargetName is how BuildKit's --target reaches the stage in the Dockerfile
// copy kiln builds: its own name, or the one WithStageNames gives it.
func (s Stage) TargetName() string {
	if s.Name != "" {
		return s.Name
	}
	return fmt.Sprintf("kiln-stage-%d", s.Index)
}

// WithStageNames names the unnamed stages among stages (by Index), so that
// BuildKit can build them as a target: their FROM becomes
// "FROM … AS <TargetName>", edited on the FROM's last line so that every
// line keeps its number. changed is false when there is nothing to name.
func WithStageNames(dt []byte, stages []Stage) (rewritten []byte, changed bool, err error) {
	names := map[int]string{}
	for _, s := range stages {
		if s.Name == "" {
			names[s.Index] = s.TargetName()
		}
	}
	if len(names) == 0 {
		return dt, false, nil
	}
	lines, froms, err := fromInstructions(dt)
	if err != nil {
		return nil, false, err
	}
	for stage, node := range froms {
		if name, ok := names[stage]; ok {
			line := lines[node.EndLine-1]
			content := strings.TrimRight(line, "\r\n")
			lines[node.EndLine-1] = content + " AS " + name + line[len(content):]
		}
	}
	rewritten = []byte(strings.Join(lines, ""))
	// A FROM the edit does not fit (e.g. one ending in a continuation at
	// the end of the file) must fail, not build something else.
	check, err := parser.Parse(bytes.NewReader(rewritten))
	if err == nil {
		var parsed []instructions.Stage
		if parsed, _, err = instructions.Parse(check.AST, linter.New(&linter.Config{})); err == nil {
			for i, name := range names {
				if i >= len(parsed) || parsed[i].Name != name {
					err = fmt.Errorf("stage %d: its FROM instruction could not be given the name %s", i, name)
					break
				}
			}
		} else {
			err = fmt.Errorf("a FROM instruction could not be given the name kiln needs for it (%w)", err)
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("naming unused stages for BuildKit: %w", err)
	}
	return rewritten, true, nil
}

// WithKanikoBaseNames makes each FROM name the base Kaniko builds on where
// BuildKit would read it otherwise: a stage named in another case (Kaniko
// matches stage names case-insensitively, BuildKit pulls the value as an
// image and fails on its upper-case letters) becomes the stage's name as the
// parser recorded it (lower case), and a value BuildKit expands differently
// (kanikoFromScope) becomes Kaniko's expansion, written out. The value is
// replaced on its own line. stages are the Dockerfile's
// (ParseDockerfileBytes); changed is false when nothing differs.
func WithKanikoBaseNames(dt []byte, stages []Stage) (rewritten []byte, changed bool, err error) {
	lines, froms, err := fromInstructions(dt)
	if err != nil {
		return nil, false, err
	}
	for i, node := range froms {
		if i >= len(stages) || node.Next == nil {
			continue
		}
		var name string
		switch s := stages[i]; {
		case s.BaseStage >= 0:
			name = stages[s.BaseStage].Name
		case s.buildkitDiffers && !strings.ContainsAny(s.Base, "$\\ \t\"'`"):
			name = s.Base
		default:
			continue
		}
		written := node.Next.Value
		if written == name {
			continue
		}
		word := regexp.MustCompile(`(^|\s)` + regexp.QuoteMeta(written) + `(\s|$)`)
		replaced := false
		for n := node.StartLine; n <= node.EndLine && n <= len(lines) && !replaced; n++ {
			if loc := word.FindStringSubmatchIndex(lines[n-1]); loc != nil {
				lines[n-1] = lines[n-1][:loc[3]] + name + lines[n-1][loc[4]:]
				replaced = true
			}
		}
		if !replaced {
			return nil, false, fmt.Errorf("line %d: FROM %s: could not refer to stage %s in the Dockerfile copy BuildKit reads", node.StartLine, written, name)
		}
		changed = true
	}
	if !changed {
		return dt, false, nil
	}
	return []byte(strings.Join(lines, "")), true, nil
}

// WithKanikoArgNames writes each ARG the way BuildKit must read it to give
// Kaniko's result (argEdit): a name written with variables (`ARG
// ${name}=value`) as its expansion, and without the names an earlier ENV
// of the stage set. An edited ARG is written on its first line (its other
// lines left empty, so line numbers stay), one left without names becomes a
// comment. stages are the Dockerfile's (ParseDockerfileBytes), whose ARGs
// dt has in the same order; a name using a variable not known before the
// build (base image ENV) or a --build-arg value stays as written.
func WithKanikoArgNames(dt []byte, stages []Stage) (rewritten []byte, changed bool, err error) {
	result, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil, false, err
	}
	ed := lineEditor{lines: strings.SplitAfter(string(dt), "\n")}
	stage, ordinal := -1, -1
	for _, node := range result.AST.Children {
		switch {
		case strings.EqualFold(node.Value, "from"):
			stage, ordinal = stage+1, -1
			continue
		case stage < 0 || stage >= len(stages) || !strings.EqualFold(node.Value, "arg"):
			continue
		}
		ordinal++
		edits := stages[stage].argEdits[ordinal]
		if len(edits) == 0 {
			continue
		}
		var kept []string
		for n := node.Next; n != nil; n = n.Next {
			key, _, _ := strings.Cut(n.Value, "=")
			name, edited := edits[key]
			switch {
			case !edited:
				kept = append(kept, n.Value)
			case name != "":
				kept = append(kept, name+strings.TrimPrefix(n.Value, key))
			}
		}
		if len(kept) == 0 {
			ed.comment(node.StartLine, node.EndLine)
			continue
		}
		for l := node.StartLine + 1; l <= node.EndLine && l <= len(ed.lines); l++ {
			ed.lines[l-1] = "\n"
		}
		ed.lines[node.StartLine-1] = "ARG " + strings.Join(kept, " ") + "\n"
		ed.changed = true
	}
	// A name Kaniko reads as written comes back unchanged.
	if !ed.changed || ed.String() == string(dt) {
		return dt, false, nil
	}
	return []byte(ed.String()), true, nil
}

// fromInstructions splits dt into lines (with their endings) and lists its
// FROM instructions in stage order.
func fromInstructions(dt []byte) (lines []string, froms []*parser.Node, err error) {
	result, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil, nil, err
	}
	for _, node := range result.AST.Children {
		if strings.EqualFold(node.Value, "from") {
			froms = append(froms, node)
		}
	}
	return strings.SplitAfter(string(dt), "\n"), froms, nil
}

// VolumeDirsContext names the empty directory, sent to BuildKit as a named
// build context, from which WithVolumeDirs's COPYs create VOLUME paths.
const VolumeDirsContext = "kiln-volume-dirs"

// VolumeDirCopy is the instruction WithVolumeDirs inserts for the VOLUME
// path volume (as written, so BuildKit expands it like Kaniko does). Its
// --exclude keeps an existing directory's owner and mode: kiln's BuildKit
// gives a directory copy's destination the source's
// (hack/buildkit/kaniko-copy-sources.patch), except with patterns.
func VolumeDirCopy(volume string) string {
	dest, _ := json.Marshal(strings.TrimSuffix(volume, "/") + "/")
	return fmt.Sprintf(`COPY --from=%s --exclude=* ["/", %s]`, VolumeDirsContext, dest)
}

// WithVolumeDirs makes a VOLUME's directories exist for the instructions
// after it, as Kaniko's VOLUME creates them (BuildKit only records them in
// the config): after each VOLUME it inserts one VolumeDirCopy per absolute
// path. changed is false when there is nothing to insert. Shaping removes
// what the COPYs add, except where Kaniko's next snapshot has it too.
func WithVolumeDirs(dt []byte) (rewritten []byte, changed bool, err error) {
	result, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil, false, err
	}
	ed := lineEditor{lines: strings.SplitAfter(string(dt), "\n")}
	for _, node := range result.AST.Children {
		if !strings.EqualFold(node.Value, "volume") {
			continue
		}
		parsed, err := instructions.ParseInstruction(node)
		if err != nil {
			return nil, false, err
		}
		for _, v := range VolumePaths(parsed.(*instructions.VolumeCommand)) {
			ed.insertAfter(node.EndLine, VolumeDirCopy(v))
		}
	}
	if !ed.changed {
		return dt, false, nil
	}
	return []byte(ed.String()), true, nil
}

// VolumePaths lists the paths a VOLUME instruction declares that are
// absolute or start with a variable (BuildKit expands those in the COPY
// destination as Kaniko expands the VOLUME), as WithVolumeDirs creates them.
func VolumePaths(cmd *instructions.VolumeCommand) []string {
	var paths []string
	for _, v := range cmd.Volumes {
		if strings.HasPrefix(v, "/") || strings.HasPrefix(v, "$") {
			paths = append(paths, v)
		}
	}
	return paths
}
