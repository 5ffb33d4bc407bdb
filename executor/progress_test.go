package executor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/internal/testenv"
	"github.com/moby/buildkit/client"
	gatewaypb "github.com/moby/buildkit/frontend/gateway/pb"
	digest "github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
)

func TestKanikoLines(t *testing.T) {
	cases := map[string][]string{
		// BaseImageResolver announces base images before the solve.
		"[internal] load metadata for docker.io/library/busybox:latest":                 nil,
		"[1/3] FROM docker.io/library/busybox:latest@sha256:" + strings.Repeat("a", 64): nil,
		"[builder 1/2] FROM localhost:5000/base:1":                                      nil,
		"[stage-1 3/5] RUN echo hi":                                                     {"RUN echo hi"},
		"[2/2] COPY --from=builder /a /b":                                               {"COPY --from=builder /a /b"},
		// The merge of a COPY --link, which runs in order, has the COPY's line.
		"[2/2] LINK COPY --from=builder /a /b":             {"COPY --from=builder /a /b"},
		"[internal] load build definition from Dockerfile": nil,
		"[internal] load .dockerignore":                    nil,
		"exporting to oci image format":                    nil,
	}
	for vertex, want := range cases {
		if got := kanikoLines(vertex); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("kanikoLines(%q) = %q, want %q", vertex, got, want)
		}
	}
}

func TestProgressPrintsEachInstructionOnceWithOutput(t *testing.T) {
	var logs, stdout, stderr bytes.Buffer
	now := time.Now()
	run := digest.FromString("run")
	ch := make(chan *client.SolveStatus, 4)
	ch <- &client.SolveStatus{Vertexes: []*client.Vertex{{Digest: run, Name: "[1/1] RUN make"}}} // not started yet
	ch <- &client.SolveStatus{
		Vertexes: []*client.Vertex{{Digest: run, Name: "[1/1] RUN make", Started: &now}},
		Logs: []*client.VertexLog{
			{Vertex: run, Stream: 1, Data: []byte("compiling\n")},
			{Vertex: run, Stream: 2, Data: []byte("warning: x\n")},
		},
	}
	ch <- &client.SolveStatus{Vertexes: []*client.Vertex{{Digest: run, Name: "[1/1] RUN make", Started: &now, Completed: &now}}}
	close(ch)
	if err := showProgress(ch, ProgressOptions{Logger: testenv.Logger(&logs), Stdout: &stdout, Stderr: &stderr}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(logs.String(), `level=info msg="RUN make"`); got != 1 {
		t.Errorf("RUN line logged %d times, want once:\n%s", got, &logs)
	}
	if stdout.String() != "compiling\n" || stderr.String() != "warning: x\n" {
		t.Errorf("stdout %q, stderr %q: RUN output not routed by stream", &stdout, &stderr)
	}
}

// A COPY --link copies at once, beside the steps before it; its line comes
// when its layer is merged, after theirs, once even over two solves.
func TestProgressLogsALinkedCopyInOrderOnce(t *testing.T) {
	var logs bytes.Buffer
	now := time.Now()
	run, copied, merged := digest.FromString("run"), digest.FromString("copy"), digest.FromString("merge")
	statuses := func() chan *client.SolveStatus {
		ch := make(chan *client.SolveStatus, 3)
		ch <- &client.SolveStatus{Vertexes: []*client.Vertex{{Digest: copied, Name: "[3/3] COPY --link a /a", Started: &now}}}
		ch <- &client.SolveStatus{Vertexes: []*client.Vertex{{Digest: run, Name: "[2/3] RUN make", Started: &now}}}
		ch <- &client.SolveStatus{Vertexes: []*client.Vertex{{Digest: merged, Name: "[3/3] LINK COPY --link a /a", Started: &now}}}
		close(ch)
		return ch
	}
	opts := ProgressOptions{Logger: testenv.Logger(&logs), Stdout: io.Discard, Stderr: io.Discard, said: map[string]bool{}}
	for range 2 {
		if err := showProgress(statuses(), opts); err != nil {
			t.Fatal(err)
		}
	}
	got := regexp.MustCompile(`msg="([^"]*)"`).FindAllStringSubmatch(logs.String(), -1)
	if len(got) != 2 || got[0][1] != "RUN make" || got[1][1] != "COPY --link a /a" {
		t.Errorf("lines %q, want RUN make, then the COPY, once each", got)
	}
}

func TestProgressDebugAddsPlainProgress(t *testing.T) {
	var logs bytes.Buffer
	logger := testenv.Logger(&logs)
	logger.Level = logrus.DebugLevel
	now := time.Now()
	ch := make(chan *client.SolveStatus, 1)
	ch <- &client.SolveStatus{Vertexes: []*client.Vertex{{Digest: digest.FromString("v"), Name: "[1/1] RUN true", Started: &now, Completed: &now}}}
	close(ch)
	if err := showProgress(ch, ProgressOptions{Logger: logger, Stdout: io.Discard, Stderr: io.Discard, Debug: true}); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, `level=info msg="RUN true"`) || !strings.Contains(out, "level=debug") || !strings.Contains(out, "DONE") {
		t.Errorf("want the Kaniko line plus BuildKit's plain progress at debug level:\n%s", out)
	}
}

func TestBuildErrorExitCode(t *testing.T) {
	typed := fmt.Errorf("failed to solve: %w", &gatewaypb.ExitError{ExitCode: 42, Err: errors.New(`process "/bin/sh -c exit 42" did not complete successfully: exit code: 42`)})
	cases := []struct {
		err  error
		want int
	}{
		{typed, 42},
		{errors.New(`failed to solve: process "/bin/sh -c false" did not complete successfully: exit code: 3`), 3},
		{errors.New("failed to solve: base image not found"), 1},
		{&gatewaypb.ExitError{ExitCode: 0}, 1},
	}
	for _, c := range cases {
		be := newBuildError(c.err)
		if be.ExitCode() != c.want {
			t.Errorf("ExitCode(%v) = %d, want %d", c.err, be.ExitCode(), c.want)
		}
		if !strings.HasPrefix(be.Error(), "error building image: ") || !errors.Is(be, c.err) {
			t.Errorf("error %q does not wrap %v with Kaniko's prefix", be, c.err)
		}
	}
	if got := newBuildError(errors.New("line one\n  line two")).Error(); got != "error building image: line one line two" {
		t.Errorf("multi-line error became %q", got)
	}
}

// A RUN whose process never started: runc's line is the step's only
// output. Output of a process that ran, or a step that did not fail, is
// never taken for it.
func TestNotStartedStepsFindRuncsStartFailure(t *testing.T) {
	runcLine := []byte("runc run failed: unable to start container process: exec: \"/bin/sh\": stat /bin/sh: no such file or directory\n")
	step := func(name string, failed bool, output ...[]byte) *client.SolveStatus {
		d := digest.FromString(name)
		v := &client.Vertex{Digest: d, Name: name}
		if failed {
			v.Error = "process did not complete successfully: exit code: 1"
		}
		s := &client.SolveStatus{Vertexes: []*client.Vertex{v}}
		for _, o := range output {
			s.Logs = append(s.Logs, &client.VertexLog{Vertex: d, Stream: 2, Data: o})
		}
		return s
	}
	cases := []struct {
		name   string
		status *client.SolveStatus
		want   string
	}{
		{"not started", step("[1/1] RUN echo hi", true, runcLine), `exec: "/bin/sh": stat /bin/sh: no such file or directory`},
		{"ran and printed the same", step("[1/1] RUN ./x", true, []byte("starting\n"), runcLine), ""},
		{"did not fail", step("[1/1] RUN cat log", false, runcLine), ""},
		{"failed otherwise", step("[1/1] RUN false", true, []byte("no\n")), ""},
	}
	for _, c := range cases {
		n := newNotStartedSteps()
		n.observe(c.status)
		if got := n.reason(); got != c.want {
			t.Errorf("%s: reason %q, want %q", c.name, got, c.want)
		}
	}
}
