package compat

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

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
	if unused := df.UnusedStages(df.Stages[2]); len(unused) != 1 || unused[0].Name != "test" {
		t.Errorf("UnusedStages(last) = %+v, want the test stage", unused)
	}
	if unused := df.UnusedStages(df.Stages[0]); len(unused) != 0 {
		t.Errorf("UnusedStages(first) = %+v", unused)
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

func TestCheckExposeLikeKaniko(t *testing.T) {
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
		{"unused stage skipped", "FROM scratch AS bad\nEXPOSE 1/sctp\nFROM scratch\n", "", true, nil, ""},
		{"stage after the target", "FROM scratch AS ok\nFROM scratch\nEXPOSE 1/sctp\n", "ok", false, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			df, err := ParseDockerfileBytes("Dockerfile", []byte(tc.content), tc.buildArgs)
			if err != nil {
				t.Fatal(err)
			}
			target, err := df.TargetStage(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			err = df.CheckExpose(target, tc.skipUnused)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestWithVolumeDirs(t *testing.T) {
	in := "FROM busybox\nVOLUME /data \\\n  /logs\nRUN true\nVOLUME [\"/my cache\", \"rel\"]"
	got, changed, err := WithVolumeDirs([]byte(in))
	if err != nil || !changed {
		t.Fatalf("changed %v, error %v", changed, err)
	}
	want := "FROM busybox\nVOLUME /data \\\n  /logs\n" +
		"COPY --from=kiln-volume-dirs [\"/\", \"/data/\"]\nCOPY --from=kiln-volume-dirs [\"/\", \"/logs/\"]\n" +
		"RUN true\nVOLUME [\"/my cache\", \"rel\"]\nCOPY --from=kiln-volume-dirs [\"/\", \"/my cache/\"]\n"
	if string(got) != want {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", got, want)
	}
	if _, changed, _ := WithVolumeDirs([]byte("FROM busybox\nRUN true\n")); changed {
		t.Error("a Dockerfile without VOLUME was rewritten")
	}
}
