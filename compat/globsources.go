package compat

import (
	"bytes"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// WithLiteralGlobSources makes a COPY/ADD source whose name holds glob
// characters copy what Kaniko copies: what the pattern matches and also the
// context path of that very name (Kaniko compares each context path with
// the source as a pattern and as a string). BuildKit only matches, so
// `COPY app/[slug]/page.tsx .` copied nothing. Where that path exists in
// ctxDir, the source is written as a glob matching only it (`[` as `[[]`)
// when the pattern matches nothing else, and otherwise followed by that
// glob as one more source. Sources with variables, from --from, or absolute
// ones stay as written; changed is false when nothing was rewritten.
func WithLiteralGlobSources(dt []byte, ctxDir string) (rewritten []byte, changed bool, err error) {
	if ctxDir == "" {
		return dt, false, nil
	}
	result, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return nil, false, err
	}
	lex := shell.NewLex(result.EscapeToken)
	context := os.DirFS(ctxDir)
	lines := strings.SplitAfter(string(dt), "\n")
	for _, node := range result.AST.Children {
		for _, src := range contextSources(node) {
			literal, ok := literalOfGlob(lex, src)
			if !ok {
				continue
			}
			if _, err := os.Lstat(filepath.Join(ctxDir, filepath.FromSlash(literal))); err != nil {
				continue
			}
			matches, err := fs.Glob(context, literal)
			if err != nil || slices.Contains(matches, literal) {
				continue
			}
			only := literalGlob(literal)
			replacement := only
			if len(matches) > 0 {
				separator := " "
				if node.Attributes["json"] {
					separator = `", "`
				}
				replacement = src + separator + only
			}
			if replaceWord(lines, node, src, replacement) {
				changed = true
			}
		}
	}
	if !changed {
		return dt, false, nil
	}
	return []byte(strings.Join(lines, "")), true, nil
}

// literalOfGlob is a source word as both builders read it, cleaned and
// relative, when it holds glob characters and can be written back as a
// plain word; ok is false otherwise.
func literalOfGlob(lex *shell.Lex, word string) (literal string, ok bool) {
	if strings.ContainsAny(word, "$") || strings.Contains(word, "://") || strings.HasPrefix(word, "/") {
		return "", false
	}
	read, _, err := lex.ProcessWord(word, shell.EnvsFromSlice(nil))
	if err != nil || !strings.ContainsAny(read, "*?[") || strings.ContainsAny(read, "\\\"'` \t$") {
		return "", false
	}
	literal = path.Clean(read)
	if literal == "." || strings.HasPrefix(literal, "../") || !fs.ValidPath(literal) {
		return "", false
	}
	return literal, true
}

// literalGlob writes a path as a glob that matches only itself.
func literalGlob(p string) string {
	return strings.NewReplacer("[", "[[]", "*", "[*]", "?", "[?]").Replace(p)
}
