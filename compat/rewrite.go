package compat

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// lineEditor changes a Dockerfile line by line, keeping every original line
// where it was relative to the others.
type lineEditor struct {
	lines   []string
	after   map[int][]string // 1-based line -> lines inserted after it
	changed bool
}

func (e *lineEditor) insertAfter(line int, text string) {
	if e.after == nil {
		e.after = map[int][]string{}
	}
	e.after[line] = append(e.after[line], text)
	e.changed = true
}

// comment turns lines first..last (1-based) into comments, keeping the
// line count, so that BuildKit's line numbers still match the user's file.
func (e *lineEditor) comment(first, last int) {
	for n := first; n <= last && n <= len(e.lines); n++ {
		e.lines[n-1] = "# " + e.lines[n-1]
	}
	e.changed = true
}

func (e *lineEditor) String() string {
	var out strings.Builder
	for i, line := range e.lines {
		out.WriteString(line)
		if add, ok := e.after[i+1]; ok {
			if !strings.HasSuffix(line, "\n") {
				out.WriteString("\n")
			}
			for _, text := range add {
				out.WriteString(text + "\n")
			}
		}
	}
	return out.String()
}

// WithoutMaintainer comments out every MAINTAINER instruction: Kaniko skips
// them, so its config keeps the base image's author where BuildKit would
// write the maintainer. lines are the instructions' first line numbers.
func WithoutMaintainer(dt []byte) (rewritten []byte, lines []int, err error) {
	result, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil, nil, err
	}
	ed := lineEditor{lines: strings.SplitAfter(string(dt), "\n")}
	for _, node := range result.AST.Children {
		if strings.EqualFold(node.Value, "maintainer") {
			ed.comment(node.StartLine, node.EndLine)
			lines = append(lines, node.StartLine)
		}
	}
	if !ed.changed {
		return dt, nil, nil
	}
	return []byte(ed.String()), lines, nil
}

// WithKanikoBackslashes writes the COPY/ADD paths of a Dockerfile with
// `# escape=“ as Kaniko reads them: Kaniko expands each path with the
// backslash as escape character whatever the directive says, so a single
// backslash disappears (`/dir\x` is `/dirx`) and `\\` is one backslash.
// The paths are rewritten for BuildKit's backtick escape: `\$`, `\"`, `\'`
// and "\`" become backtick escapes. Paths in JSON form are left as written.
func WithKanikoBackslashes(dt []byte) (rewritten []byte, changed bool, err error) {
	result, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil, false, err
	}
	if result.EscapeToken != '`' {
		return dt, false, nil
	}
	lines := strings.SplitAfter(string(dt), "\n")
	for _, node := range result.AST.Children {
		if !strings.EqualFold(node.Value, "copy") && !strings.EqualFold(node.Value, "add") || len(node.Heredocs) > 0 {
			continue
		}
		for n := node.Next; n != nil; n = n.Next {
			if !strings.Contains(n.Value, `\`) || strings.Contains(n.Value, "://") {
				continue
			}
			if replaceWord(lines, node, n.Value, kanikoUnescaped(n.Value)) {
				changed = true
			}
		}
	}
	if !changed {
		return dt, false, nil
	}
	return []byte(strings.Join(lines, "")), true, nil
}

// kanikoUnescaped is word with its backslash escapes resolved as Kaniko's
// lexer resolves them, in BuildKit's backtick-escaped form.
func kanikoUnescaped(word string) string {
	var out strings.Builder
	for i := 0; i < len(word); i++ {
		if word[i] != '\\' || i+1 == len(word) {
			out.WriteByte(word[i])
			continue
		}
		i++
		if strings.IndexByte("$\"'`", word[i]) >= 0 {
			out.WriteByte('`')
		}
		out.WriteByte(word[i])
	}
	return out.String()
}

// AutomaticArgs are the ARGs BuildKit sets on its own (the build's and the
// target's platform, the target stage). Kaniko sets none of them: a
// Dockerfile reading them sees what --build-arg gives, else nothing.
var AutomaticArgs = []string{
	"BUILDPLATFORM", "BUILDOS", "BUILDOSVERSION", "BUILDARCH", "BUILDVARIANT",
	"TARGETPLATFORM", "TARGETOS", "TARGETOSVERSION", "TARGETARCH", "TARGETVARIANT",
	"TARGETSTAGE",
}

// WithoutFromPlatform drops the --platform flag of every FROM: Kaniko
// ignores it and pulls each base for --custom-platform (else the host's
// platform), the platform kiln gives BuildKit for the whole build.
func WithoutFromPlatform(dt []byte) (rewritten []byte, changed bool, err error) {
	lines, froms, err := fromInstructions(dt)
	if err != nil {
		return nil, false, err
	}
	for _, node := range froms {
		for _, flag := range node.Flags {
			if !strings.HasPrefix(flag, "--platform=") {
				continue
			}
			if !dropPlatformFlag(lines, node) {
				return nil, false, fmt.Errorf("line %d: FROM %s: Kaniko ignores --platform, and the flag could not be left out of the Dockerfile copy BuildKit reads: write it on the FROM line itself", node.StartLine, flag)
			}
			changed = true
		}
	}
	if !changed {
		return dt, false, nil
	}
	return []byte(strings.Join(lines, "")), true, nil
}

// platformFlag is --platform=value as written, quotes included.
var platformFlag = regexp.MustCompile(`(^|\s)--platform=(?:"[^"]*"|'[^']*'|[^\s"'])+`)

// dropPlatformFlag removes the first --platform flag written on node's lines.
func dropPlatformFlag(lines []string, node *parser.Node) bool {
	for l := node.StartLine; l <= node.EndLine && l <= len(lines); l++ {
		if loc := platformFlag.FindStringSubmatchIndex(lines[l-1]); loc != nil {
			lines[l-1] = lines[l-1][:loc[3]] + lines[l-1][loc[1]:]
			return true
		}
	}
	return false
}
