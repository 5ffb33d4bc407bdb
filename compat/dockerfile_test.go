package compat

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/kilnbuild/kiln/flagmap"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestResolveDockerfile(t *testing.T) {
	cwd := t.TempDir()
	ctx := t.TempDir()
	t.Chdir(cwd)
	writeFile(t, filepath.Join(cwd, "cwd.Dockerfile"), "FROM scratch\n")
	writeFile(t, filepath.Join(ctx, "Dockerfile"), "FROM scratch\n")
	writeFile(t, filepath.Join(ctx, "build", "app.Dockerfile"), "FROM scratch\n")
	writeFile(t, filepath.Join(cwd, "Dockerfile"), "FROM scratch\n") // CWD wins over the context

	for _, tc := range []struct{ given, want string }{
		{"", filepath.Join(cwd, "Dockerfile")},
		{"cwd.Dockerfile", filepath.Join(cwd, "cwd.Dockerfile")},
		{"build/app.Dockerfile", filepath.Join(ctx, "build", "app.Dockerfile")},
		{filepath.Join(ctx, "Dockerfile"), filepath.Join(ctx, "Dockerfile")},
		{"https://example.com/Dockerfile", "https://example.com/Dockerfile"},
	} {
		got, err := ResolveDockerfile(&flagmap.Options{Dockerfile: tc.given}, ctx)
		if err != nil {
			t.Errorf("%q: %v", tc.given, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.given, got, tc.want)
		}
	}

	_, err := ResolveDockerfile(&flagmap.Options{Dockerfile: "missing.Dockerfile"}, ctx)
	if err == nil || !strings.Contains(err.Error(), MissingDockerfileError) || !strings.Contains(err.Error(), "--dockerfile missing.Dockerfile") {
		t.Errorf("missing Dockerfile: error %v", err)
	}
	_, err = ResolveDockerfile(&flagmap.Options{Dockerfile: "build"}, ctx)
	if err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory as Dockerfile: error %v", err)
	}
}

func TestDockerignorePath(t *testing.T) {
	ctx := t.TempDir()
	df := filepath.Join(ctx, "build", "app.Dockerfile")
	writeFile(t, df, "FROM scratch\n")
	if _, ok := DockerignorePath(df, ctx); ok {
		t.Fatal("found an ignore file where there is none")
	}
	writeFile(t, filepath.Join(ctx, ".dockerignore"), "*.log\n")
	if got, ok := DockerignorePath(df, ctx); !ok || got != filepath.Join(ctx, ".dockerignore") {
		t.Fatalf("context ignore file: got %q %v", got, ok)
	}
	writeFile(t, df+".dockerignore", "*.tmp\n")
	if got, ok := DockerignorePath(df, ctx); !ok || got != df+".dockerignore" {
		t.Fatalf("sibling ignore file: got %q %v", got, ok)
	}
}

const multiStage = `# syntax=docker/dockerfile:1
ARG GO_VERSION=1.22
ARG BASE=debian:${DEBIAN:-bookworm}-slim
FROM golang:${GO_VERSION} AS Build
COPY --from=alpine:3.20 /etc/os-release /tmp/
RUN go build ./...
FROM build AS test
RUN go test ./...
FROM $BASE
COPY --from=build /out /app
COPY --from=0 /out /app2
COPY --from=busybox:stable /bin/busybox /bin/
`

func TestParseDockerfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Dockerfile")
	writeFile(t, path, multiStage)
	df, err := ParseDockerfile(path, []string{"GO_VERSION=1.23"})
	if err != nil {
		t.Fatal(err)
	}
	if df.Syntax != "docker/dockerfile:1" {
		t.Errorf("Syntax = %q", df.Syntax)
	}
	if !reflect.DeepEqual(df.MetaArgs, []string{"GO_VERSION", "BASE"}) {
		t.Errorf("MetaArgs = %v", df.MetaArgs)
	}
	if len(df.Stages) != 3 {
		t.Fatalf("stages = %+v", df.Stages)
	}
	if s := df.Stages[0]; s.Base != "golang:1.23" || s.Name != "build" || s.BaseStage != -1 {
		t.Errorf("stage 0 = %+v", s)
	}
	if s := df.Stages[1]; s.BaseStage != 0 {
		t.Errorf("stage 1 should build on stage 0: %+v", s)
	}
	if s := df.Stages[2]; s.Base != "debian:bookworm-slim" || s.From != "$BASE" {
		t.Errorf("stage 2 = %+v", s)
	}
	want := []string{"golang:1.23", "alpine:3.20", "debian:bookworm-slim", "busybox:stable"}
	if got := df.BaseImages(); !reflect.DeepEqual(got, want) {
		t.Errorf("BaseImages = %v, want %v", got, want)
	}
	if s, err := df.TargetStage("BUILD"); err != nil || s.Index != 0 {
		t.Errorf("TargetStage(BUILD) = %+v, %v", s, err)
	}
	if s, err := df.TargetStage(""); err != nil || s.Index != 2 {
		t.Errorf("TargetStage(\"\") = %+v, %v", s, err)
	}
	if s := df.Stages[2]; !reflect.DeepEqual(s.Needs, []int{0, 0}) {
		t.Errorf("stage 2 needs %v, want [0 0]", s.Needs)
	}
	for target, want := range map[string][]int{"": {1}, "build": nil, "test": nil} {
		kaniko, err := df.KanikoStages(target, false)
		if err != nil {
			t.Fatal(err)
		}
		if got := stageIndexes(df.ExtraStages(kaniko)); !reflect.DeepEqual(got, want) {
			t.Errorf("ExtraStages(target %q) = %v, want %v", target, got, want)
		}
	}
	if _, err := df.TargetStage("release"); err == nil || !strings.Contains(err.Error(), "--target release") {
		t.Errorf("TargetStage(release) error = %v", err)
	}
}

func TestParseDockerfileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, content, want string }{
		{"unknown instruction", "FROM scratch\nFROBNICATE x\n", "unknown instruction"},
		{"empty base", "ARG IMAGE\nFROM $IMAGE\n", "--build-arg"},
	} {
		path := filepath.Join(dir, tc.name)
		writeFile(t, path, tc.content)
		_, err := ParseDockerfile(path, nil)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.want)) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := ParseDockerfile(filepath.Join(dir, "absent"), nil); err == nil {
		t.Error("absent file: no error")
	}
}

func TestParseDockerfileURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/Dockerfile" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("FROM alpine:3.20\n"))
	}))
	defer srv.Close()
	df, err := ParseDockerfile(srv.URL+"/Dockerfile", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := df.BaseImages(); !reflect.DeepEqual(got, []string{"alpine:3.20"}) {
		t.Errorf("BaseImages = %v", got)
	}
	if _, err := ParseDockerfile(srv.URL+"/missing", nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("missing URL: error %v", err)
	}
}

// TestKanikoRefusals: what Kaniko refuses, at parse time (CheckFlags) or in
// a stage it builds (CheckStages), kiln refuses before building.
func TestKanikoRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, content, target string
		skipUnused            bool
		buildArgs             []string
		want                  string // "" means accepted
	}{
		{"tcp udp and bare ports", "FROM scratch\nEXPOSE 80 53/udp 443/tcp\n", "", false, nil, ""},
		{"sctp", "FROM scratch\nEXPOSE 80\nEXPOSE 9000/sctp\n", "", false, nil, "line 3: EXPOSE 9000/sctp: invalid protocol: sctp"},
		{"upper case", "FROM scratch\nEXPOSE 80/TCP\n", "", false, nil, "invalid protocol: TCP"},
		{"from ENV", "FROM scratch\nENV PROTO=sctp\nEXPOSE 9000/${PROTO}\n", "", false, nil, "invalid protocol: sctp"},
		{"from build arg", "FROM scratch\nARG PROTO=udp\nEXPOSE 9000/$PROTO\n", "", false, []string{"PROTO=sctp"}, "invalid protocol: sctp"},
		{"meta ARG seen by the stage", "ARG PROTO=sctp\nFROM scratch\nEXPOSE 9000/$PROTO\n", "", false, nil, "invalid protocol: sctp"},
		{"inherited from the base stage", "FROM scratch AS a\nENV P=sctp\nFROM a\nEXPOSE 1/$P\n", "", false, nil, "invalid protocol: sctp"},
		{"base image variable not judged", "FROM busybox\nEXPOSE 9000/$FROM_BASE\n", "", false, nil, ""},
		{"unused stage built by Kaniko", "FROM scratch AS bad\nEXPOSE 1/sctp\nFROM scratch\n", "", false, nil, "invalid protocol: sctp"},
		// Kaniko's filter keeps every stage when the target refers to none.
		{"unused stage kept by --skip-unused-stages", "FROM scratch AS bad\nEXPOSE 1/sctp\nFROM scratch\n", "", true, nil, "invalid protocol: sctp"},
		{"unused stage skipped", "FROM scratch AS bad\nEXPOSE 1/sctp\nFROM scratch\nCOPY a /a\n", "", true, nil, ""},
		{"stage after the target", "FROM scratch AS ok\nFROM scratch\nEXPOSE 1/sctp\n", "ok", false, nil, ""},
		{"octal chmod", "FROM scratch\nCOPY --chmod=0755 a /a\nADD --chmod=644 b /b\n", "", false, nil, ""},
		{"symbolic chmod", "FROM scratch\nCOPY --chmod=u+x a /a\n", "", false, nil, `line 2: COPY --chmod=u+x: Kaniko reads --chmod as an octal mode only (parsing value from chmod: "u+x")`},
		{"symbolic chmod on ADD", "FROM scratch\nADD --chmod=go-w a /a\n", "", false, nil, "line 2: ADD --chmod=go-w"},
		{"chmod from an ARG", "FROM scratch\nARG MODE=a=r\nCOPY --chmod=$MODE a /a\n", "", false, nil, `COPY --chmod=$MODE: Kaniko reads --chmod as an octal mode only (parsing value from chmod: "a=r")`},
		{"chmod from a build arg", "FROM scratch\nARG MODE=644\nCOPY --chmod=$MODE a /a\n", "", false, []string{"MODE=u+r"}, `"u+r"`},
		{"chmod expanding to nothing", "FROM scratch\nARG MODE=\nCOPY --chmod=${MODE} a /a\n", "", false, nil, `(parsing value from chmod: "")`},
		{"chmod from the base image not judged", "FROM busybox\nCOPY --chmod=$FROM_BASE a /a\n", "", false, nil, ""},
		{"first refusal wins", "FROM scratch\nCOPY --chmod=u+x a /a\nEXPOSE 1/sctp\n", "", false, nil, "line 2: COPY"},
		{"chmod in a stage Kaniko skips", "FROM scratch AS bad\nCOPY --chmod=u+x a /a\nFROM scratch\nCOPY b /b\n", "", true, nil, ""},
		{"flags Kaniko knows", "FROM --platform=linux/amd64 busybox\nRUN --mount=type=cache,target=/c --network=none true\nCOPY --from=0 --chown=1 --chmod=644 --link a /a\nADD --checksum=sha256:00 --keep-git-dir=true --link b /b\n", "", false, nil, ""},
		{"COPY --exclude", "FROM busybox\nRUN true\nCOPY --exclude=*.log . /app/\n", "", false, nil, "Dockerfile: dockerfile parse error on line 3: unknown flag: exclude: Kaniko v1.23.2 has no COPY --exclude; remove the flag"},
		{"COPY --parents", "FROM busybox\nCOPY --parents a/b /c/\n", "", false, nil, "line 2: unknown flag: parents"},
		{"ADD --exclude", "FROM busybox\nADD --exclude=x . /app/\n", "", false, nil, "unknown flag: exclude: Kaniko v1.23.2 has no ADD --exclude"},
		{"ADD --unpack", "FROM busybox\nADD --unpack=true a.tar /x/\n", "", false, nil, "unknown flag: unpack"},
		{"RUN --security", "FROM busybox\nRUN --security=sandbox true\n", "", false, nil, "unknown flag: security"},
		{"RUN --device", "FROM busybox\nRUN --device=name true\n", "", false, nil, "unknown flag: device"},
		{"lower-case instruction", "from busybox\ncopy --parents a /b/\n", "", false, nil, "line 2: unknown flag: parents: Kaniko v1.23.2 has no COPY --parents"},
		{"in a stage after the target", "FROM busybox AS a\nFROM busybox\nRUN --security=insecure true\n", "", false, nil, "line 3: unknown flag: security"},
		{"in an ONBUILD trigger", "FROM busybox\nONBUILD COPY --parents a /b/\n", "", false, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			df, err := ParseDockerfileBytes("Dockerfile", []byte(tc.content), tc.buildArgs)
			if err != nil {
				t.Fatal(err)
			}
			err = df.CheckFlags()
			if err == nil {
				stages, stagesErr := df.KanikoStages(tc.target, tc.skipUnused)
				if stagesErr != nil {
					t.Fatal(stagesErr)
				}
				err = CheckStages(stages)
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestExposeWordsKeepTextBeforeAnExpansion checks kiln's BuildKit patch
// (hack/buildkit/nested-expansion-words.patch): EXPOSE splits its values
// into words, and a ${name:-word} lost the text before it in its word.
func TestExposeWordsKeepTextBeforeAnExpansion(t *testing.T) {
	lex := shell.NewLex('\\')
	env := shell.EnvsFromSlice([]string{"P=1"})
	for value, want := range map[string][]string{
		"${PORT:-8080}/${PROTO:-udp}": {"8080/udp"},
		"9${PORT:-090} $P/${Q:+x}tcp": {"9090", "1/tcp"},
		"${P}/${PROTO}":               {"1/"},
	} {
		got, err := lex.ProcessWords(value, env)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ProcessWords(%q) = %q, %v; want %q", value, got, err, want)
		}
	}
}

func TestWithVolumeDirs(t *testing.T) {
	in := "FROM busybox\nVOLUME /data \\\n  /logs\nRUN true\nVOLUME [\"/my cache\", \"rel\"]\nVOLUME [\"${V}\"]"
	got, changed, err := WithVolumeDirs([]byte(in))
	if err != nil || !changed {
		t.Fatalf("changed %v, error %v", changed, err)
	}
	want := "FROM busybox\nVOLUME /data \\\n  /logs\n" +
		"COPY --from=kiln-volume-dirs --exclude=* [\"/\", \"/data/\"]\nCOPY --from=kiln-volume-dirs --exclude=* [\"/\", \"/logs/\"]\n" +
		"RUN true\nVOLUME [\"/my cache\", \"rel\"]\nCOPY --from=kiln-volume-dirs --exclude=* [\"/\", \"/my cache/\"]\n" +
		"VOLUME [\"${V}\"]\nCOPY --from=kiln-volume-dirs --exclude=* [\"/\", \"${V}/\"]\n"
	if string(got) != want {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", got, want)
	}
	if _, changed, _ := WithVolumeDirs([]byte("FROM busybox\nRUN true\n")); changed {
		t.Error("a Dockerfile without VOLUME was rewritten")
	}
}

func TestWithKanikoBaseNames(t *testing.T) {
	in := "ARG S=Build_Stage\nFROM busybox AS Build_Stage\nRUN true\nFROM Build_Stage AS Next\nFROM  --platform=linux/amd64 \\\n  ${S}\nFROM next\nFROM busybox\n"
	df, err := ParseDockerfileBytes("Dockerfile", []byte(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, changed, err := WithKanikoBaseNames([]byte(in), df.Stages)
	if err != nil || !changed {
		t.Fatalf("changed %v, error %v", changed, err)
	}
	want := "ARG S=Build_Stage\nFROM busybox AS Build_Stage\nRUN true\nFROM build_stage AS Next\nFROM  --platform=linux/amd64 \\\n  build_stage\nFROM next\nFROM busybox\n"
	if string(got) != want {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", got, want)
	}
	lower := "FROM busybox AS a\nFROM a\n"
	df, _ = ParseDockerfileBytes("Dockerfile", []byte(lower), nil)
	if _, changed, _ := WithKanikoBaseNames([]byte(lower), df.Stages); changed {
		t.Error("a FROM naming its stage as declared was rewritten")
	}
}

func TestKanikoExpandsFromWithItsOwnArgs(t *testing.T) {
	in := "ARG BASE=build\nARG REG=r.example\nARG IMG=${REG}/x\nFROM busybox AS build\nFROM ${BASE:-busybox}\nFROM ${IMG}\nFROM ${UNDECLARED:-scratch}\n"
	given := []string{"BASE=", "REG=mirror.example", "UNDECLARED=alpine=3"}
	df, err := ParseDockerfileBytes("Dockerfile", []byte(in), given)
	if err != nil {
		t.Fatal(err)
	}
	// An empty --build-arg keeps the default, a given one reaches a nested
	// default, an undeclared one is seen, cut at its second "=".
	for i, want := range []string{"busybox", "build", "mirror.example/x", "alpine"} {
		if got := df.Stages[i].Base; got != want {
			t.Errorf("stage %d: Base %q, want %q", i, got, want)
		}
	}
	if len(df.Warnings) != 2 || !strings.Contains(df.Warnings[0], "line 5: FROM ${BASE:-busybox}") || strings.Contains(strings.Join(df.Warnings, ""), "alpine") {
		t.Errorf("warnings %q: want lines 5 and 7 named, no --build-arg value", df.Warnings)
	}
	got, changed, err := WithKanikoBaseNames([]byte(in), df.Stages)
	if err != nil || !changed {
		t.Fatalf("changed %v, error %v", changed, err)
	}
	want := "ARG BASE=build\nARG REG=r.example\nARG IMG=${REG}/x\nFROM busybox AS build\nFROM build\nFROM ${IMG}\nFROM alpine\n"
	if string(got) != want {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", got, want)
	}
}

func TestWithKanikoArgNames(t *testing.T) {
	in := "ARG P=META\nFROM busybox\nARG name=KEY given\nCOPY --from=kiln-volume-dirs [\"/\", \"/v/\"]\nARG ${name}=value ${P}_X \\\n  ${given}=no\nENV E=env\nARG ${E}_Y\n"
	df, err := ParseDockerfileBytes("Dockerfile", []byte(in), []string{"given=secret"})
	if err != nil {
		t.Fatal(err)
	}
	got, changed, err := WithKanikoArgNames([]byte(in), df.Stages)
	if err != nil || !changed {
		t.Fatalf("changed %v, error %v", changed, err)
	}
	// ${given} comes from --build-arg: its value never enters the copy.
	want := "ARG P=META\nFROM busybox\nARG name=KEY given\nCOPY --from=kiln-volume-dirs [\"/\", \"/v/\"]\nARG KEY=value META_X ${given}=no\n\nENV E=env\nARG env_Y\n"
	if string(got) != want {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", got, want)
	}
	// An ARG after an ENV of the same name is dropped (Kaniko's ENV wins).
	shadow := "FROM busybox\nARG X=1\nENV X=env Y=y\nARG X=2 Z=3\nARG Y\nRUN true\n"
	df, _ = ParseDockerfileBytes("Dockerfile", []byte(shadow), nil)
	got, _, err = WithKanikoArgNames([]byte(shadow), df.Stages)
	if want := "FROM busybox\nARG X=1\nENV X=env Y=y\nARG Z=3\n# ARG Y\nRUN true\n"; err != nil || string(got) != want {
		t.Fatalf("rewritten (%v):\n%s\nwant:\n%s", err, got, want)
	}
}

func stageIndexes(stages []Stage) []int {
	var indexes []int
	for _, s := range stages {
		indexes = append(indexes, s.Index)
	}
	return indexes
}

// TestKanikoStages: the stages Kaniko v1.23.2 builds, as its stage
// selection behaves (with --skip-unused-stages, its string-based scan).
func TestKanikoStages(t *testing.T) {
	for _, tc := range []struct {
		name, dockerfile, target string
		skipUnused               bool
		want                     []int
		extra                    []int // of want, what the target does not need
	}{
		{"every stage up to the target", "FROM busybox AS a\nFROM busybox\nFROM busybox AS c\nRUN exit 1\n", "", false, []int{0, 1, 2}, []int{0, 1}},
		{"none after the target", "FROM busybox AS a\nFROM busybox AS b\nFROM busybox AS c\n", "B", false, []int{0, 1}, []int{0}},
		{"what the target needs is no extra", "FROM busybox AS a\nFROM a\nCOPY --from=0 /x /x\n", "", false, []int{0, 1}, nil},
		{"skip: no --target and no reference keeps all", "FROM busybox AS broken\nRUN exit 3\nFROM busybox\nRUN true\n", "", true, []int{0, 1}, []int{0}},
		{"skip: --target and no reference keeps the target", "FROM busybox AS a\nRUN exit 3\nFROM busybox AS b\nRUN true\n", "b", true, []int{1}, nil},
		{"skip: --target naming the last stage is still --target", "FROM busybox AS a\nFROM busybox AS b\n", "b", true, []int{1}, nil},
		{"skip: COPY from the context applies the filter", "FROM busybox\nRUN exit 1\nFROM busybox AS helper\nRUN exit 2\nFROM busybox\nCOPY f /f\n", "", true, []int{2}, nil},
		{"skip: COPY --from a named stage", "FROM busybox AS broken\nRUN exit 3\nFROM busybox AS support\nFROM busybox\nCOPY --from=support /s /s\n", "", true, []int{1, 2}, nil},
		{"skip: unnamed stages are dropped even when used", "FROM busybox\nRUN echo > /x\nFROM busybox\nCOPY --from=0 /x /x\n", "", true, []int{1}, nil},
		{"skip: COPY --from a number stands for the stage's name", "FROM busybox AS one\nFROM busybox AS two\nFROM busybox\nCOPY --from=0 /x /x\n", "", true, []int{0, 2}, nil},
		{"skip: the stage named as the target's FROM", "FROM busybox AS base\nFROM busybox AS broken\nRUN exit 3\nFROM base AS app\nFROM busybox\nRUN exit 9\n", "app", true, []int{0, 2}, nil},
		{"skip: references of reached stages count", "FROM busybox AS other\nFROM busybox AS dep\nFROM dep AS mid\nCOPY --from=other /o /o\nFROM busybox AS lone\nFROM busybox\nCOPY --from=mid /m /m\n", "", true, []int{0, 1, 2, 4}, nil},
		{"skip: names are compared as written", "FROM busybox AS Builder\nFROM busybox\nCOPY --from=Builder /b /b\n", "", true, []int{1}, nil},
		{"skip: a reference to an image names no stage", "FROM busybox AS a\nFROM busybox\nCOPY --from=alpine:3.20 /x /x\n", "", true, []int{1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			df, err := ParseDockerfileBytes("Dockerfile", []byte(tc.dockerfile), nil)
			if err != nil {
				t.Fatal(err)
			}
			stages, err := df.KanikoStages(tc.target, tc.skipUnused)
			if err != nil {
				t.Fatal(err)
			}
			if got := stageIndexes(stages); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("KanikoStages = %v, want %v", got, tc.want)
			}
			if got := stageIndexes(df.ExtraStages(stages)); !reflect.DeepEqual(got, tc.extra) {
				t.Errorf("ExtraStages = %v, want %v", got, tc.extra)
			}
		})
	}
	df, err := ParseDockerfileBytes("Dockerfile", []byte("FROM busybox AS a\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := df.KanikoStages("missing", true); err == nil || !strings.Contains(err.Error(), "--target missing") {
		t.Errorf("unknown target: error %v", err)
	}
}

func TestWithStageNames(t *testing.T) {
	in := "FROM busybox\r\nRUN true\nFROM --platform=linux/amd64 \\\n# comment\n  busybox\nFROM busybox AS named\nFROM busybox"
	df, err := ParseDockerfileBytes("Dockerfile", []byte(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	out, changed, err := WithStageNames([]byte(in), df.Stages)
	if err != nil || !changed {
		t.Fatalf("changed %v, error %v", changed, err)
	}
	want := "FROM busybox AS kiln-stage-0\r\nRUN true\nFROM --platform=linux/amd64 \\\n# comment\n  busybox AS kiln-stage-1\nFROM busybox AS named\nFROM busybox AS kiln-stage-3"
	if string(out) != want {
		t.Errorf("rewritten:\n%q\nwant\n%q", out, want)
	}
	renamed, err := ParseDockerfileBytes("Dockerfile", out, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range renamed.Stages {
		if s.Name != df.Stages[i].TargetName() {
			t.Errorf("stage %d is named %q, want %q", i, s.Name, df.Stages[i].TargetName())
		}
	}

	if out, changed, err := WithStageNames([]byte(in), df.Stages[2:3]); err != nil || changed || string(out) != in {
		t.Errorf("only named stages: changed %v, error %v", changed, err)
	}
	// A FROM ending in a continuation cannot take the name on its last
	// line; building another stage would be worse than failing.
	for _, odd := range []string{"FROM busybox AS a\nFROM busybox \\", "FROM busybox AS a\nFROM busybox \\\n# comment\n"} {
		df, err = ParseDockerfileBytes("Dockerfile", []byte(odd), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := WithStageNames([]byte(odd), df.Stages); err == nil || !strings.Contains(err.Error(), "naming unused stages") {
			t.Errorf("%q: error %v", odd, err)
		}
	}
}

func TestParseRefusesBytesBuildKitCannotCarry(t *testing.T) {
	for dockerfile, want := range map[string]string{
		"FROM busybox\nRUN echo '\xff\xfe' > /f\n":                      "Dockerfile: line 2: RUN has bytes that are not UTF-8",
		"FROM busybox\nCOPY <<EOF /f\n\xc3\x28\nEOF\n":                  "Dockerfile: line 2: COPY has bytes that are not UTF-8",
		"FROM busybox\nRUN true\nCOPY a\x00 /\n":                        "Dockerfile: line 3: COPY contains a NUL byte",
		"# comment \xff is never sent\nFROM busybox\nRUN true\n":        "",
		"\xff\xfeFROM busybox\n":                                        `Dockerfile: line 1: \xff\xfeFROM has bytes that are not UTF-8`,
		"FROM busybox\n\nRUN echo " + strings.Repeat("x", 70000) + "\n": "Dockerfile: line 3 is longer than the 65535 bytes",
	} {
		_, err := ParseDockerfileBytes("Dockerfile", []byte(dockerfile), nil)
		if want == "" && err != nil || want != "" && (err == nil || !strings.HasPrefix(err.Error(), want)) {
			t.Errorf("%q: %v, want %q", dockerfile, err, want)
		}
	}
}
