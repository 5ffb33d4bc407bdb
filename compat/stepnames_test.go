package compat

import (
	"slices"
	"strings"
	"testing"
)

func TestStepNamesShowInstructionsAsWritten(t *testing.T) {
	dockerfile := `FROM busybox AS build
ARG TOKEN
ENV DERIVED=x-$TOKEN
RUN echo "$TOKEN" > /a
RUN echo hello
RUN test "$DERIVED" = "x-$TOKEN"
WORKDIR /src/${DERIVED}
FROM build
COPY --from=build /a /b-${TOKEN}
RUN echo hello
`
	steps, err := NewStepNames([]byte(dockerfile), nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		`[build 2/4] RUN echo "s3cr3t-value" > /a`:           `[build 2/4] RUN echo "$TOKEN" > /a`,
		`[build 3/4] RUN echo hello`:                         `[build 3/4] RUN echo hello`,
		`[build 4/4] WORKDIR /src/x-s3cr3t-value`:            `[build 4/4] WORKDIR /src/${DERIVED}`,
		`[stage-1 1/2] COPY --from=build /a /b-s3cr3t-value`: `[stage-1 1/2] COPY --from=build /a /b-${TOKEN}`,
		// Padded step numbers, as BuildKit prints them for ten steps or more.
		`[stage-1  2/12] RUN echo hello`: `[stage-1  2/12] RUN echo hello`,
	} {
		got, ok := steps.Written(name)
		if !ok || got != want {
			t.Errorf("Written(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
	for _, internal := range []string{"[internal] load build context", "[build 1/4] FROM docker.io/library/busybox:latest", "[build 2/4] ONBUILD RUN make"} {
		if got, ok := steps.Written(internal); ok {
			t.Errorf("Written(%q) = %q: not a step of the Dockerfile", internal, got)
		}
	}
}

func TestStepNamesSingleStageHasNoLabel(t *testing.T) {
	steps, err := NewStepNames([]byte("from busybox\narg TOKEN\nrun test -n $TOKEN\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := steps.Written("[2/2] RUN test -n abcdef")
	if want := "[2/2] run test -n $TOKEN"; !ok || got != want {
		t.Errorf("Written = %q, %v; want %q", got, ok, want)
	}
}

// FuzzStepNames: any Dockerfile and step name, without a panic; a name
// mapped keeps BuildKit's "[stage n/m] " prefix and never gains a value
// the name carried in place of a variable.
func FuzzStepNames(f *testing.F) {
	f.Add("FROM busybox\nARG T\nRUN echo $T\n", "[2/2] RUN echo value")
	f.Add("FROM a AS b\nENV X=${Y:-d}\nWORKDIR /w/$X\nCOPY --from=b /a /b-${X}\n", "[b 2/3] WORKDIR /w/d")
	f.Add("# escape=`\nFROM a\nRUN echo `$x \\\n  && true\n", "[ 2/10] RUN echo $x && true")
	f.Add("FROM scratch\nADD <<EOF /f\nx\nEOF\n", "[1/1] ADD <<EOF /f")
	f.Fuzz(func(t *testing.T, dockerfile, name string) {
		for i, origin := range LineOrigins([]byte(dockerfile), []byte(dockerfile)) {
			if origin != i+1 {
				t.Fatalf("line %d of an unchanged Dockerfile comes from line %d", i+1, origin)
			}
		}
		steps, err := NewStepNames([]byte(dockerfile), nil)
		if err != nil {
			return
		}
		got, ok := steps.Written(name)
		if !ok {
			return
		}
		prefix := stepPrefix.FindStringSubmatch(name)
		if prefix == nil || !strings.HasPrefix(got, name[:len(name)-len(prefix[4])]) {
			t.Errorf("Written(%q) = %q: BuildKit's prefix lost", name, got)
		}
	})
}

func TestStepNamesOfBytesThatAreNotUTF8(t *testing.T) {
	steps, err := NewStepNames([]byte("FROM a\nRUN echo \xff\xfe $X\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := steps.Written("[2/2] RUN echo \xff\xfe value"); !ok || got != "[2/2] RUN echo \xff\xfe $X" {
		t.Errorf("Written = %q, %v", got, ok)
	}
}

func TestStepsKeepTheUsersTextOfRewrittenInstructions(t *testing.T) {
	written := "FROM busybox AS Base\nCOPY [\"route[id].txt\", \"/json/\"]\nFROM Base\nRUN echo hi\nVOLUME /v\nCOPY a.txt \\\n  /dst/\n"
	// As kiln stages it: sources and FROM rewritten in place, an ARG added
	// after a FROM, a COPY after the VOLUME, a continuation line commented.
	staged := "FROM busybox AS base\nCOPY [\"route[[]id].txt\", \"/json/\"]\nFROM base\nARG CARRIED=1\nRUN echo hi\nVOLUME /v\nCOPY --from=kiln-volume-dirs / /v/\nCOPY a.tx[t] /dst/\n#\n"
	origins := LineOrigins([]byte(written), []byte(staged))
	if want := []int{1, 2, 3, 0, 4, 5, 0, 6, 7, 8}; !slices.Equal(origins, want) {
		t.Fatalf("line origins %v, want %v", origins, want)
	}
	steps, err := NewStepNames([]byte(staged), []byte(written))
	if err != nil {
		t.Fatal(err)
	}
	for shown, want := range map[string]string{
		`[base 2/2] COPY ["route[[]id].txt", "/json/"]`: `[base 2/2] COPY ["route[id].txt", "/json/"]`,
		"[stage-1 4/4] COPY a.tx[t] /dst/":              "[stage-1 4/4] COPY a.txt   /dst/", // continuation joined, as Kaniko logs it
		"[stage-1 2/4] RUN echo hi":                     "[stage-1 2/4] RUN echo hi",
		// kiln's own step gets no step line.
		"[stage-1 3/4] COPY --from=kiln-volume-dirs / /v/": "[internal] kiln: COPY --from=kiln-volume-dirs / /v/",
	} {
		if got, ok := steps.Written(shown); !ok || got != want {
			t.Errorf("%s: written as %q (%v), want %q", shown, got, ok, want)
		}
	}
}
