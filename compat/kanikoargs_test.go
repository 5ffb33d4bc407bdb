package compat

import (
	"bytes"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// stageArgs parses a rewritten Dockerfile and returns, per stage, the ARG
// values BuildKit would see declared after its leading ARG instructions
// (KEY=VALUE, "KEY" when declared without a value).
func stageArgs(t *testing.T, dt string) [][]string {
	t.Helper()
	res, err := parser.Parse(strings.NewReader(dt))
	if err != nil {
		t.Fatalf("rewritten Dockerfile does not parse: %v\n%s", err, dt)
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatalf("rewritten Dockerfile does not parse: %v\n%s", err, dt)
	}
	lex := shell.NewLex(res.EscapeToken)
	var out [][]string
	for _, st := range stages {
		var args []string
		for _, c := range st.Commands {
			a, ok := c.(*instructions.ArgCommand)
			if !ok {
				continue
			}
			for _, kv := range a.Args {
				if kv.Value == nil {
					args = append(args, kv.Key)
					continue
				}
				v, _, err := lex.ProcessWord(*kv.Value, shell.EnvsFromSlice(nil))
				if err != nil {
					t.Fatal(err)
				}
				args = append(args, kv.Key+"="+v)
			}
		}
		out = append(out, args)
	}
	return out
}

func TestWithKanikoArgScopeCarriesDeclaredArgs(t *testing.T) {
	df := "ARG SHARED=meta\nFROM busybox AS first\nARG SHARED\nARG LOCAL=one\nRUN echo \"$SHARED $LOCAL\" > /first\nFROM busybox\nARG LOCAL\nRUN echo \"[$SHARED] [$LOCAL]\" > /second\n"
	out, changed, notes, err := WithKanikoArgScope([]byte(df), []int{0, 1}, nil)
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	lines := strings.Split(string(out), "\n")
	if lines[5] != "FROM busybox" || lines[6] != "ARG SHARED='meta' LOCAL='one'" || lines[7] != "ARG LOCAL" {
		t.Fatalf("expected the carried ARGs right after the second FROM:\n%s", out)
	}
	// Every original line is kept, in order.
	if got := strings.Replace(string(out), "ARG SHARED='meta' LOCAL='one'\n", "", 1); got != df {
		t.Fatalf("original lines changed:\n%s", out)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "SHARED, LOCAL") {
		t.Fatalf("notes = %q", notes)
	}
	if got := stageArgs(t, string(out)); strings.Join(got[1], " ") != "SHARED=meta LOCAL=one LOCAL" {
		t.Fatalf("stage 1 args = %q", got[1])
	}
}

func TestWithKanikoArgScopeLeavesSingleStageAndFirstBuiltStageAlone(t *testing.T) {
	df := "FROM busybox\nARG A=1\nRUN true\n"
	if out, changed, _, err := WithKanikoArgScope([]byte(df), []int{0}, nil); err != nil || changed || string(out) != df {
		t.Fatalf("single stage rewritten: %v %v\n%s", changed, err, out)
	}
	// Stage 0 is not built (--skip-unused-stages): nothing carries from it.
	df = "FROM busybox AS unused\nARG A=1\nFROM busybox\nRUN echo $A\n"
	if out, changed, _, err := WithKanikoArgScope([]byte(df), []int{1}, nil); err != nil || changed || string(out) != df {
		t.Fatalf("unbuilt stage carried: %v %v\n%s", changed, err, out)
	}
}

func TestWithKanikoArgScopeBuildArgsWinWithoutRepeatingTheirValue(t *testing.T) {
	df := "FROM busybox\nARG TOKEN=default\nFROM busybox\nRUN echo $TOKEN\n"
	out, changed, _, err := WithKanikoArgScope([]byte(df), []int{0, 1}, []string{"TOKEN=s3cret"})
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	if strings.Contains(string(out), "s3cret") || !strings.Contains(string(out), "\nARG TOKEN\n") {
		t.Fatalf("a --build-arg must be declared by name only (its value never written):\n%s", out)
	}
}

func TestWithKanikoArgScopeQuotesValuesExactly(t *testing.T) {
	for _, tc := range []struct{ header, value, want string }{
		{"", `"it's $BASE/a b \\ \$HOME"`, `it's /opt/a b \ $HOME`},
		{"# escape=`\n", "\"it's $BASE/a `\"q`\" \\\"", `it's /opt/a "q" \`},
	} {
		df := tc.header + "FROM busybox\nENV BASE=/opt\nARG V=" + tc.value + "\nFROM busybox\nRUN true\n"
		out, changed, _, err := WithKanikoArgScope([]byte(df), []int{0, 1}, nil)
		if err != nil || !changed {
			t.Fatalf("%q: changed=%v err=%v", df, changed, err)
		}
		if got := stageArgs(t, string(out)); len(got[1]) != 1 || got[1][0] != "V="+tc.want {
			t.Fatalf("stage 1 args = %q, want V=%s\n%s", got[1], tc.want, out)
		}
	}
}

func TestWithKanikoArgScopeSkipsValuesFromTheBaseImageEnvironment(t *testing.T) {
	df := "FROM busybox\nARG P=$PATH:/extra\nARG K=known\nFROM busybox\nRUN true\n"
	out, changed, notes, err := WithKanikoArgScope([]byte(df), []int{0, 1}, nil)
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	if !strings.Contains(string(out), "\nARG K='known'\n") || strings.Contains(string(out), "P=") && strings.Count(string(out), "P=") > 1 {
		t.Fatalf("only K should be carried:\n%s", out)
	}
	if !strings.Contains(strings.Join(notes, "\n"), "ARG P from an earlier stage is not carried") {
		t.Fatalf("no note about P: %q", notes)
	}
	// From scratch nothing else can set a variable: unset means empty, as in Kaniko.
	df = "FROM scratch\nARG X=${UNSET:-fallback}\nFROM busybox\nRUN true\n"
	out, _, _, err = WithKanikoArgScope([]byte(df), []int{0, 1}, nil)
	if err != nil || !strings.Contains(string(out), "\nARG X='fallback'\n") {
		t.Fatalf("scratch value not carried (err %v):\n%s", err, out)
	}
}

func TestWithKanikoArgScopeKeepsDeclaredValueOverMetaArg(t *testing.T) {
	df := "ARG V=meta\nFROM busybox\nARG V=stage\nFROM busybox\nARG V\nRUN echo $V\n"
	out, changed, _, err := WithKanikoArgScope([]byte(df), []int{0, 1}, nil)
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	got := stageArgs(t, string(out))
	if strings.Join(got[1], " ") != "V=stage V=stage" {
		t.Fatalf("stage 1 args = %q (BuildKit would take the meta value for a bare ARG V)\n%s", got[1], out)
	}
	// Line count grows by the one inserted ARG line only.
	if strings.Count(string(out), "\n") != strings.Count(df, "\n")+1 {
		t.Fatalf("lines added beyond the carried ARG line:\n%s", out)
	}
}

func TestWithKanikoArgScopeFollowsStageEnv(t *testing.T) {
	df := "FROM scratch AS a\nENV DIR=/srv\nARG OUT=$DIR/out\nFROM a\nARG OUT\nFROM busybox\nRUN echo $OUT\n"
	out, _, _, err := WithKanikoArgScope([]byte(df), []int{0, 1, 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := stageArgs(t, string(out)); len(got[2]) != 1 || got[2][0] != "OUT=/srv/out" {
		t.Fatalf("stage 2 args = %q\n%s", got[2], out)
	}
	if _, _, _, err := WithKanikoArgScope(bytes.Repeat([]byte("FROM busybox\n"), 1), []int{3}, nil); err == nil {
		t.Fatal("an out-of-range stage must fail")
	}
}
