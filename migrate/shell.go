package migrate

import (
	"path"
	"strings"
)

// word is one shell word with quotes removed; variables are kept as text.
type word struct {
	text string
	// bareVar names the variable when the whole word is an unquoted $VAR or
	// ${VAR}, which the shell would word-split on expansion.
	bareVar string
}

// shellCommands splits a POSIX shell script into simple commands: words
// separated by blanks, commands by newlines, ';', '&', '|', '&&' and '||'.
// Quotes and backslashes are honoured, backslash-newline continues a line,
// '#' starts a comment, and $VAR, ${…}, $(…) and `…` stay verbatim.
func shellCommands(script string) [][]word {
	var (
		cmds    [][]word
		cur     []word
		buf     strings.Builder
		inWord  bool
		quoted  bool
		varOnly = true
	)
	endWord := func() {
		if !inWord {
			return
		}
		w := word{text: buf.String()}
		if !quoted && varOnly {
			w.bareVar = bareVariable(w.text)
		}
		cur = append(cur, w)
		buf.Reset()
		inWord, quoted, varOnly = false, false, true
	}
	endCmd := func() {
		endWord()
		if len(cur) > 0 {
			cmds = append(cmds, cur)
		}
		cur = nil
	}
	rs := []rune(script)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case c == '\\' && i+1 < len(rs):
			i++
			if rs[i] == '\n' {
				continue
			}
			buf.WriteRune(rs[i])
			inWord, varOnly = true, false
		case c == '\'':
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			buf.WriteString(string(rs[i+1 : min(j, len(rs))]))
			i = j
			inWord, quoted = true, true
		case c == '"':
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) && strings.ContainsRune("\"\\$`\n", rs[j+1]) {
					j++
					if rs[j] != '\n' {
						buf.WriteRune(rs[j])
					}
					continue
				}
				buf.WriteRune(rs[j])
			}
			i = j
			inWord, quoted = true, true
		case c == '$' && i+1 < len(rs) && (rs[i+1] == '(' || rs[i+1] == '{'):
			open, closing := rs[i+1], map[rune]rune{'(': ')', '{': '}'}[rs[i+1]]
			depth, j := 0, i+1
			for ; j < len(rs); j++ {
				if rs[j] == open {
					depth++
				} else if rs[j] == closing {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			buf.WriteString(string(rs[i:min(j+1, len(rs))]))
			if open == '(' {
				varOnly = false
			}
			i = j
			inWord = true
		case c == '`':
			j := i + 1
			for j < len(rs) && rs[j] != '`' {
				j++
			}
			buf.WriteString(string(rs[i:min(j+1, len(rs))]))
			i = j
			inWord, varOnly = true, false
		case c == '#' && !inWord:
			for i < len(rs) && rs[i] != '\n' {
				i++
			}
			endCmd()
		case c == ' ' || c == '\t':
			endWord()
		case c == '\n' || c == ';' || c == '&' || c == '|':
			endCmd()
		default:
			buf.WriteRune(c)
			inWord = true
		}
	}
	endCmd()
	return cmds
}

// bareVariable returns NAME for "$NAME" or "${NAME}", else "".
func bareVariable(s string) string {
	if !strings.HasPrefix(s, "$") {
		return ""
	}
	name := strings.TrimPrefix(s, "$")
	if strings.HasPrefix(name, "{") && strings.HasSuffix(name, "}") {
		name = name[1 : len(name)-1]
	}
	for i, r := range name {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return ""
		}
	}
	return name
}

// isExecutorCommand reports whether argv0 runs Kaniko's executor (or the
// fork's) or Kimia, whose command lines kiln takes.
func isExecutorCommand(argv0 string) bool {
	return argv0 == "/kaniko/executor" || path.Base(argv0) == "executor" || path.Base(argv0) == "kimia"
}

// executorCalls finds executor invocations in a script and returns their
// arguments. A bare unquoted $VAR whose value vars knows is word-split as
// the shell would (an empty value disappears); other variables stay as
// written.
func executorCalls(script string, vars map[string]string) [][]string {
	var calls [][]string
	for _, cmd := range shellCommands(script) {
		i := 0
		// Skip "exec" and leading VAR=value assignments.
		for i < len(cmd) && (cmd[i].text == "exec" || (strings.Contains(cmd[i].text, "=") && !strings.HasPrefix(cmd[i].text, "-"))) {
			i++
		}
		if i >= len(cmd) || !isExecutorCommand(cmd[i].text) {
			continue
		}
		args := []string{}
		for _, w := range cmd[i+1:] {
			if v, ok := vars[w.bareVar]; ok && w.bareVar != "" {
				args = append(args, strings.Fields(v)...)
				continue
			}
			args = append(args, w.text)
		}
		calls = append(calls, args)
	}
	return calls
}
