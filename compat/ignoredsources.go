package compat

import (
	"bytes"
	"path"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// WithIgnoredSources keeps a COPY/ADD of a context source that the
// .dockerignore excludes from failing: Kaniko copies nothing for it and
// builds, BuildKit fails because the context it received lacks the file.
// Each such literal source is written as a one-character glob of itself
// (`secret.txt` → `secret.tx[t]`), which matches nothing in the filtered
// context, as BuildKit allows for wildcards. dockerignore is the ignore
// file's content; changed is false when no source is excluded.
func WithIgnoredSources(dt, dockerignore []byte) (rewritten []byte, changed bool, err error) {
	patterns, err := ignorefile.ReadAll(bytes.NewReader(dockerignore))
	if err != nil || len(patterns) == 0 {
		return dt, false, err
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, false, err
	}
	result, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil, false, err
	}
	lines := strings.SplitAfter(string(dt), "\n")
	for _, node := range result.AST.Children {
		if !strings.EqualFold(node.Value, "copy") && !strings.EqualFold(node.Value, "add") || len(node.Heredocs) > 0 {
			continue
		}
		if hasFromFlag(node.Flags) {
			continue
		}
		var args []string
		for n := node.Next; n != nil; n = n.Next {
			args = append(args, n.Value)
		}
		if len(args) < 2 {
			continue
		}
		for _, src := range args[:len(args)-1] {
			if strings.ContainsAny(src, "*?[]$\\") || strings.Contains(src, "://") {
				continue
			}
			rel := strings.TrimPrefix(path.Clean("/"+src), "/")
			if rel == "" {
				continue
			}
			if excluded, err := pm.MatchesOrParentMatches(rel); err != nil || !excluded {
				continue
			}
			word := regexp.MustCompile(`(^|[\s"])` + regexp.QuoteMeta(src) + `([\s"]|$)`)
			for l := node.StartLine; l <= node.EndLine && l <= len(lines); l++ {
				if loc := word.FindStringSubmatchIndex(lines[l-1]); loc != nil {
					lines[l-1] = lines[l-1][:loc[3]] + globOf(src) + lines[l-1][loc[4]:]
					changed = true
					break
				}
			}
		}
	}
	if !changed {
		return dt, false, nil
	}
	return []byte(strings.Join(lines, "")), true, nil
}

// globOf writes a literal path as a glob matching only itself: its last
// name's last character in brackets.
func globOf(p string) string {
	trimmed := strings.TrimRight(p, "/")
	if trimmed == "" {
		return p
	}
	_, size := utf8.DecodeLastRuneInString(trimmed)
	last := len(trimmed) - size
	return trimmed[:last] + "[" + trimmed[last:] + "]" + p[len(trimmed):]
}

func hasFromFlag(flags []string) bool {
	for _, f := range flags {
		if strings.HasPrefix(f, "--from=") {
			return true
		}
	}
	return false
}
