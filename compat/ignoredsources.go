package compat

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
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
		return nil, false, fmt.Errorf(".dockerignore: %w: check its patterns' [ ] and \\ (BuildKit refuses the file too)", err)
	}
	result, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil, false, err
	}
	lines := strings.SplitAfter(string(dt), "\n")
	for _, node := range result.AST.Children {
		for _, src := range contextSources(node) {
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
			if replaceWord(lines, node, src, globOf(src)) {
				changed = true
			}
		}
	}
	if !changed {
		return dt, false, nil
	}
	return []byte(strings.Join(lines, "")), true, nil
}

// replaceWord writes replacement for the first whole occurrence of word
// (between blanks or quotes) in node's lines; false when there is none.
func replaceWord(lines []string, node *parser.Node, word, replacement string) bool {
	re := regexp.MustCompile(`(^|[\s"])` + regexp.QuoteMeta(word) + `([\s"]|$)`)
	for l := node.StartLine; l <= node.EndLine && l <= len(lines); l++ {
		if loc := re.FindStringSubmatchIndex(lines[l-1]); loc != nil {
			lines[l-1] = lines[l-1][:loc[3]] + replacement + lines[l-1][loc[4]:]
			return true
		}
	}
	return false
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

// contextSources are the sources, as written, of a COPY or ADD that copies
// from the build context (no --from, no heredoc); nil for other nodes.
func contextSources(node *parser.Node) []string {
	if !strings.EqualFold(node.Value, "copy") && !strings.EqualFold(node.Value, "add") || len(node.Heredocs) > 0 || hasFromFlag(node.Flags) {
		return nil
	}
	var args []string
	for n := node.Next; n != nil; n = n.Next {
		args = append(args, n.Value)
	}
	if len(args) < 2 {
		return nil
	}
	return args[:len(args)-1]
}

func hasFromFlag(flags []string) bool {
	for _, f := range flags {
		if strings.HasPrefix(f, "--from=") {
			return true
		}
	}
	return false
}

// ContextMatcher answers whether a COPY/ADD source (relative, slash-separated
// path or glob) names anything Kaniko would copy from the context in dir:
// a path that exists, or a glob matching a context path (whole relative
// paths, as Kaniko matches them), that dockerignore does not exclude.
func ContextMatcher(dir string, dockerignore []byte) (func(pattern string) (bool, error), error) {
	patterns, err := ignorefile.ReadAll(bytes.NewReader(dockerignore))
	if err != nil {
		return nil, err
	}
	var pm *patternmatcher.PatternMatcher
	if len(patterns) > 0 {
		if pm, err = patternmatcher.New(patterns); err != nil {
			return nil, err
		}
	}
	keptItself := func(rel string) (bool, error) {
		if pm == nil {
			return true, nil
		}
		excluded, err := pm.MatchesOrParentMatches(rel)
		return !excluded, err
	}
	// An excluded directory still gives what a negation (!dir/file)
	// brings back.
	kept := func(rel string) (bool, error) {
		if ok, err := keptItself(rel); ok || err != nil {
			return ok, err
		}
		found := false
		root := filepath.Join(dir, filepath.FromSlash(rel))
		err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
			if err != nil || p == root {
				return err
			}
			sub, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			if found, err = keptItself(filepath.ToSlash(sub)); found || err != nil {
				return errors.Join(err, filepath.SkipAll)
			}
			return nil
		})
		if errors.Is(err, filepath.SkipAll) {
			err = nil
		}
		return found, err
	}
	return func(pattern string) (bool, error) {
		if pattern == "" || pattern == "." {
			return true, nil
		}
		if !strings.ContainsAny(pattern, "*?[\\") {
			if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(pattern))); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return false, nil
				}
				return false, err
			}
			return kept(pattern)
		}
		found := false
		var keptErr error
		err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil || rel == "." {
				return err
			}
			rel = filepath.ToSlash(rel)
			// Kaniko takes the path of the pattern's very name too.
			if ok, _ := path.Match(pattern, rel); !ok && rel != pattern {
				return nil
			}
			if found, keptErr = kept(rel); found || keptErr != nil {
				return filepath.SkipAll
			}
			return nil
		})
		if err == nil {
			err = keptErr
		}
		return found, err
	}, nil
}
