package compat

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

func TestWithoutMaintainerKeepsLineNumbers(t *testing.T) {
	df := "FROM busybox\nMAINTAINER someone@example.com\nRUN echo a \\\n  && echo b\nmaintainer two \\\n  lines\nLABEL x=y\n"
	out, lines, err := WithoutMaintainer([]byte(df))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(lines, []int{2, 5}) {
		t.Fatalf("lines = %v, want [2 5]", lines)
	}
	if strings.Count(string(out), "\n") != strings.Count(df, "\n") {
		t.Fatalf("line count changed:\n%s", out)
	}
	res, err := parser.Parse(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range stages[0].Commands {
		got = append(got, c.Name()+"@"+strings.TrimSpace(strings.Split(string(out), "\n")[c.Location()[0].Start.Line-1]))
	}
	want := []string{"RUN@RUN echo a \\", "LABEL@LABEL x=y"}
	if !slices.Equal(got, want) {
		t.Fatalf("instructions after rewrite = %q, want %q", got, want)
	}
	if same, none, _ := WithoutMaintainer([]byte("FROM busybox\n")); string(same) != "FROM busybox\n" || none != nil {
		t.Fatalf("a Dockerfile without MAINTAINER changed: %q %v", same, none)
	}
}

func TestWithKanikoBackslashes(t *testing.T) {
	in := "# escape=`\nFROM busybox\nRUN echo 'c:\\path' > /p\nCOPY a.txt /dir\\with\\backslash/\nADD b\\\\c.txt \\$HOME/ /d\\x/\nCOPY [\"j\\\\k\", \"/j/\"]\n"
	got, changed, err := WithKanikoBackslashes([]byte(in))
	if err != nil || !changed {
		t.Fatalf("changed %v, error %v", changed, err)
	}
	want := "# escape=`\nFROM busybox\nRUN echo 'c:\\path' > /p\nCOPY a.txt /dirwithbackslash/\nADD b\\c.txt `$HOME/ /dx/\nCOPY [\"j\\\\k\", \"/j/\"]\n"
	if string(got) != want {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", got, want)
	}
	plain := "FROM busybox\nCOPY a.txt /dir\\x/\n"
	if out, changed, _ := WithKanikoBackslashes([]byte(plain)); changed || string(out) != plain {
		t.Errorf("rewritten without the backtick directive: %q", out)
	}
}

func TestWithoutFromPlatform(t *testing.T) {
	df := "ARG B=busybox\nFROM --platform=$BUILDPLATFORM golang AS build\nRUN --network=none true\n" +
		"FROM \\\n  --platform=linux/arm64 ${B}\nfrom --platform=${TARGETPLATFORM:-linux/amd64} build\n" +
		"FROM --platform=\"linux/amd64\" busybox\nFROM --platform='linux'/amd64 scratch\nFROM scratch\n"
	out, changed, err := WithoutFromPlatform([]byte(df))
	if err != nil || !changed {
		t.Fatalf("changed %v, error %v", changed, err)
	}
	want := "ARG B=busybox\nFROM  golang AS build\nRUN --network=none true\n" +
		"FROM \\\n   ${B}\nfrom  build\nFROM  busybox\nFROM  scratch\nFROM scratch\n"
	if string(out) != want {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", out, want)
	}
	if same, changed, err := WithoutFromPlatform([]byte("FROM busybox\nRUN echo --platform=x\n")); err != nil || changed || string(same) != "FROM busybox\nRUN echo --platform=x\n" {
		t.Fatalf("a Dockerfile without FROM --platform changed: %q %v %v", same, changed, err)
	}
}
