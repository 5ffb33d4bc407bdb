package executor

import (
	"errors"
	"strings"
	"testing"

	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/flagmap"
	"github.com/moby/buildkit/solver/errdefs"
	"github.com/moby/buildkit/solver/pb"
)

func TestExplainMistake(t *testing.T) {
	dockerfile, err := compat.ParseDockerfileBytes("Dockerfile", []byte("FROM busybox\nCOPY --from=biuld /a /a\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	at := buildSite{context: "/workspace/", dockerfile: dockerfile}
	cases := map[string]string{
		// As BuildKit v0.34 words a COPY of a missing file.
		`failed to solve: failed to compute cache key: failed to calculate checksum of ref ttoru1::cqwj2: "/missing.txt": not found`: "missing.txt not found in the build context /workspace/",
		`retrieving base image biuld: GET https://index.docker.io/v2/library/biuld/manifests/latest: UNAUTHORIZED`:                   "COPY --from=biuld: no stage is named biuld",
		`lstat /workspace/private: permission denied`: "cannot read /workspace/private in the build context /workspace/",
		// As BuildKit v0.34 words an export into a full work dir.
		`failed to solve: failed to copy: failed to send write: rpc error: code = Unknown desc = write /run/user/1000/kiln-build-1/oci/ingest/ab/data: no space left on device`: "no space left on device in /run/user/1000, which holds",
		`RUN could not start its command: exec: "/bin/sh": stat /bin/sh: no such file or directory`:                                                                             `starting command: exec: "/bin/sh": stat /bin/sh: no such file or directory: the stage has no such program`,
		`failed to solve: failed to compute cache key: failed to calculate checksum of ref m90a::l7sm: too many links`:                                                          "a source in the build context /workspace/ is a symlink loop",
		"failed to solve: failed to process \"${B\": unsupported modifier (\uFFFD) in substitution":                                                                             `"${B" is not a valid variable expansion (unsupported modifier (end of text) in substitution)`,
		"failed to solve: failed to process \"/srv/${DIR?no-dir}\": DIR: no-dir":                                                                                                "DIR needs a value (DIR: no-dir): give it one with --build-arg DIR=... or an ARG or ENV before this instruction",
		"failed to solve: failed to process \"\\\"${APP:?}\\\"\": APP: is not allowed to be empty":                                                                              "APP needs a value (APP: is not allowed to be empty)",
		"failed to solve: failed to process \"${N//-}\": syntax error: missing '/' in ${}":                                                                                      `"${N//-}" is not a valid variable expansion (syntax error: missing '/' in ${})`,
		// A "NAME: …" report about a variable the word does not require.
		"failed to solve: failed to process \"${HOME:-/root}\": HOME: unexpected": `"${HOME:-/root}" is not a valid variable expansion (HOME: unexpected)`,
	}
	for report, want := range cases {
		got := explainMistake(&BuildError{Err: errors.New(report), Code: 1}, at)
		var be *BuildError
		if !errors.As(got, &be) || be.Code != 1 || !strings.Contains(got.Error(), want) {
			t.Errorf("explainMistake(%q) = %v, want a BuildError with %q", report, got, want)
		}
	}
	// A base image (not a COPY --from) that cannot be pulled, a file outside
	// the context: their reports stay.
	for _, report := range []string{"retrieving base image busybox: not found", "open /var/lib/buildkit/x: permission denied"} {
		if err := errors.New(report); explainMistake(err, at) != err {
			t.Errorf("explainMistake(%q) = %v, want it unchanged", report, explainMistake(err, at))
		}
	}
}

func TestContextNameHidesCredentials(t *testing.T) {
	if got := contextName(&flagmap.Options{Context: "git://oauth2:tok-123@git.example.com/app.git#main"}); strings.Contains(got, "tok-123") || !strings.Contains(got, "git.example.com/app.git") {
		t.Errorf("contextName = %q", got)
	}
}

// BuildKit quotes kiln's rewritten Dockerfile; messages quote the user's.
func TestFailedInstructionIsQuotedAsWritten(t *testing.T) {
	written := []byte("FROM busybox\nCOPY missing.txt /\n")
	staged := []byte("FROM busybox\nCOPY --link missing.txt /\n")
	err := errdefs.WithSource(errors.New(`"/missing.txt": not found`), &errdefs.Source{
		Info:   &pb.SourceInfo{Filename: "Dockerfile", Data: staged},
		Ranges: []*pb.Range{{Start: &pb.Position{Line: 2}, End: &pb.Position{Line: 2}}},
	})
	if got := failedInstruction(err, written); got != "COPY missing.txt /" {
		t.Errorf("as written: %q, want the user's line", got)
	}
	if got := failedInstruction(err, nil); got != "COPY --link missing.txt /" {
		t.Errorf("without the written Dockerfile: %q, want BuildKit's line", got)
	}
}
