package compat

import (
	"bytes"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// fuzzPinned is the digest reference every base image is pinned to.
const fuzzPinned = "mirror.example/library/base@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// FuzzDockerfileRewriters: every rewrite kiln makes to the Dockerfile copy
// BuildKit reads, on any Dockerfile BuildKit's parser accepts. A rewrite
// never panics and never fails on such a Dockerfile; what it writes parses
// to the same number of stages; the rewrites that promise to keep line
// numbers keep every instruction on its line; and each rewrite applied to
// its own output changes nothing more.
func FuzzDockerfileRewriters(f *testing.F) {
	for _, seed := range []struct{ dockerfile, ignore, buildArg string }{
		{"FROM busybox\nMAINTAINER me\nRUN true\n", "", ""},
		{"ARG BASE=busybox\nFROM ${BASE} AS Build\nARG A=1\nRUN echo $A\nFROM build\nARG A\nCOPY --from=BUILD /a /b\n", "", "A=2"},
		{"FROM a\nENV N=x\nARG ${N}=v N\nFROM scratch\nFROM a AS named\nVOLUME /v ${X}/w rel\n", "", ""},
		{"# escape=`\nFROM a `\n  AS b\nMAINTAINER x `\n  y\nFROM b\nCOPY secret.txt dir/ /dst/\n", "secret.txt\ndir", ""},
		{"FROM --platform=$BUILDPLATFORM a:1 AS x\r\nRUN <<EOF\r\necho\r\nEOF\r\nFROM x\r\nADD f* /\r\n", "**/*.tmp", "BUILDPLATFORM=linux/arm64"},
		{"from a\nfrom 0\nfrom A\ncopy --from=0 ü /ü\n", "ü", ""},
	} {
		f.Add(seed.dockerfile, seed.ignore, seed.buildArg)
	}
	f.Fuzz(func(t *testing.T, dockerfile, dockerignore, buildArg string) {
		dt := []byte(dockerfile)
		args := []string{buildArg}
		df, err := ParseDockerfileBytes("Dockerfile", dt, args)
		if err != nil {
			return
		}
		stages := len(df.Stages)
		all := df.Stages
		pinned := map[string]string{}
		for _, s := range df.Stages {
			pinned[s.Base] = fuzzPinned
		}
		order := make([]int, len(all))
		for i, s := range all {
			order[i] = s.Index
		}

		type rewrite struct {
			name       string
			keepsLines bool
			apply      func(dt []byte) ([]byte, bool, error)
			// reparsed is what apply takes on its own output, the second time.
			again func(out []byte) ([]byte, bool, error)
		}
		reparse := func(out []byte) *Dockerfile {
			d, err := ParseDockerfileBytes("Dockerfile", out, args)
			if err != nil {
				t.Fatalf("rewritten Dockerfile does not parse: %v\n%s", err, out)
			}
			return d
		}
		rewrites := []rewrite{
			{"WithoutMaintainer", true,
				func(dt []byte) ([]byte, bool, error) {
					out, lines, err := WithoutMaintainer(dt)
					return out, len(lines) > 0, err
				},
				func(out []byte) ([]byte, bool, error) {
					out, lines, err := WithoutMaintainer(out)
					return out, len(lines) > 0, err
				}},
			{"WithStageNames", true,
				func(dt []byte) ([]byte, bool, error) { return WithStageNames(dt, all) },
				func(out []byte) ([]byte, bool, error) { return WithStageNames(out, reparse(out).Stages) }},
			{"WithKanikoBaseNames", true,
				func(dt []byte) ([]byte, bool, error) { return WithKanikoBaseNames(dt, all) },
				func(out []byte) ([]byte, bool, error) { return WithKanikoBaseNames(out, reparse(out).Stages) }},
			{"WithKanikoArgNames", true,
				func(dt []byte) ([]byte, bool, error) { return WithKanikoArgNames(dt, all) },
				func(out []byte) ([]byte, bool, error) { return WithKanikoArgNames(out, reparse(out).Stages) }},
			{"WithIgnoredSources", true,
				func(dt []byte) ([]byte, bool, error) { return WithIgnoredSources(dt, []byte(dockerignore)) },
				func(out []byte) ([]byte, bool, error) { return WithIgnoredSources(out, []byte(dockerignore)) }},
			{"WithPinnedBases", true,
				func(dt []byte) ([]byte, bool, error) { return df.WithPinnedBases(dt, pinned) },
				func(out []byte) ([]byte, bool, error) { return reparse(out).WithPinnedBases(out, pinned) }},
			{"WithKanikoArgScope", false,
				func(dt []byte) ([]byte, bool, error) {
					out, changed, _, err := WithKanikoArgScope(dt, order, args)
					return out, changed, err
				}, nil},
			{"WithVolumeDirs", false, WithVolumeDirs, nil},
			{"WithoutFromPlatform", true, WithoutFromPlatform, WithoutFromPlatform},
		}
		for _, r := range rewrites {
			out, changed, err := r.apply(dt)
			if err != nil {
				if strings.ContainsAny(err.Error(), "\n") {
					t.Errorf("%s: a multi-line error: %q", r.name, err)
				}
				// A refusal is a build failing where Kaniko builds: only
				// acceptable for what BuildKit cannot be told.
				if !refusalExpected(r.name, err) {
					t.Errorf("%s fails on a Dockerfile the parser accepts: %v", r.name, err)
				}
				continue
			}
			if !changed {
				if !bytes.Equal(out, dt) {
					t.Errorf("%s reports no change but changed the Dockerfile", r.name)
				}
				continue
			}
			got := reparse(out)
			if len(got.Stages) != stages {
				t.Errorf("%s: %d stages, the Dockerfile has %d\n%s", r.name, len(got.Stages), stages, out)
			}
			if r.keepsLines {
				checkLinesKept(t, r.name, dt, out)
			}
			if r.again == nil {
				continue
			}
			twice, changedAgain, err := r.again(out)
			if err != nil || changedAgain {
				t.Errorf("%s applied to its own output: changed %v, err %v\nonce:\n%s\ntwice:\n%s", r.name, changedAgain, err, out, twice)
			}
		}
	})
}

// refusalExpected lists the rewrite errors that are the rewrite saying it
// cannot express a Dockerfile, rather than a bug.
func refusalExpected(rewrite string, err error) bool {
	return rewrite == "WithStageNames" && strings.Contains(err.Error(), "could not be given the name") ||
		// An ignore file BuildKit refuses as well, named.
		rewrite == "WithIgnoredSources" && strings.HasPrefix(err.Error(), ".dockerignore: ") ||
		rewrite == "WithoutFromPlatform" && strings.Contains(err.Error(), "could not be left out")
}

// checkLinesKept: every instruction of the rewritten Dockerfile that is an
// instruction of the original starts on the same line, and no line moves.
func checkLinesKept(t *testing.T, rewrite string, before, after []byte) {
	t.Helper()
	starts := func(dt []byte) map[int]string {
		res, err := parser.Parse(bytes.NewReader(dt))
		if err != nil {
			t.Fatalf("%s: %v", rewrite, err)
		}
		out := map[int]string{}
		for _, n := range res.AST.Children {
			out[n.StartLine] = strings.ToLower(n.Value)
		}
		return out
	}
	was, is := starts(before), starts(after)
	for line, inst := range is {
		if old, ok := was[line]; !ok || old != inst {
			t.Errorf("%s: line %d is now %s, was %q", rewrite, line, inst, old)
		}
	}
	for line, inst := range was {
		if _, ok := is[line]; !ok && inst != "maintainer" && inst != "arg" {
			t.Errorf("%s: the %s on line %d is gone", rewrite, inst, line)
		}
	}
	if _, _, err := instructions.Parse(mustParse(t, after).AST, nil); err != nil {
		t.Errorf("%s: %v", rewrite, err)
	}
}

func mustParse(t *testing.T, dt []byte) *parser.Result {
	t.Helper()
	res, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		t.Fatal(err)
	}
	return res
}
