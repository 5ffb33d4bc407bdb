package executor

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/internal/testenv"
	"github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
)

const testSecret = "tok-5f2a9c1e"

// TestProgressNeverShowsBuildArgValues feeds what BuildKit reports for a
// build using a build-arg secret, at trace level, and looks for the value
// anywhere in the log.
func TestProgressNeverShowsBuildArgValues(t *testing.T) {
	steps, err := compat.NewStepNames([]byte("FROM busybox\nARG TOKEN\nRUN test -n \"$TOKEN\"\nRUN exit 3\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	secrets := newSecretFilter([]string{"TOKEN=" + testSecret, "SHORT=1"})
	var logs bytes.Buffer
	logger := testenv.Logger(&logs)
	logger.Level = logrus.TraceLevel
	defer secrets.hideIn(logger)()

	now := time.Now()
	run, failing := digest.FromString("run"), digest.FromString("failing")
	ch := make(chan *client.SolveStatus, 2)
	ch <- &client.SolveStatus{
		Vertexes: []*client.Vertex{
			{Digest: run, Name: `[2/3] RUN test -n "` + testSecret + `"`, Started: &now, Completed: &now, Cached: true},
			{Digest: digest.FromString("other"), Name: "[internal] load metadata with " + testSecret, Started: &now},
		},
		Statuses: []*client.VertexStatus{{ID: "pulling " + testSecret, Vertex: run}},
		Warnings: []*client.VertexWarning{{Vertex: run, Short: []byte("warned about " + testSecret)}},
	}
	ch <- &client.SolveStatus{Vertexes: []*client.Vertex{{Digest: failing, Name: "[3/3] RUN exit 3", Started: &now, Completed: &now, Error: "failed with " + testSecret}}}
	close(ch)
	err = showProgress(ch, ProgressOptions{Logger: logger, Stdout: io.Discard, Stderr: io.Discard, Debug: true, Steps: steps, Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	logger.Debugf("daemon line carrying %s", testSecret)
	out := logs.String()
	if strings.Contains(out, testSecret) {
		t.Errorf("the build-arg value reached the log:\n%s", out)
	}
	if !strings.Contains(out, `level=info msg="Using caching version of cmd: RUN test -n \"$TOKEN\""`) {
		t.Errorf("want the cached RUN logged as written:\n%s", out)
	}
	if !strings.Contains(out, "daemon line carrying $TOKEN") {
		t.Errorf("want debug lines filtered, not dropped:\n%s", out)
	}
}

func TestSecretFilterKeepsExitCodeAndShortValues(t *testing.T) {
	secrets := newSecretFilter([]string{"A=" + testSecret, "AB=" + testSecret + "-longer", "ON=on"})
	if got := secrets.Redact("x " + testSecret + "-longer y " + testSecret + " on"); got != "x $AB y $A on" {
		t.Errorf("Redact = %q", got)
	}
	err := secrets.Error(&BuildError{Err: errors.New("RUN echo " + testSecret), Code: 42})
	var coded interface{ ExitCode() int }
	if !errors.As(err, &coded) || coded.ExitCode() != 42 || strings.Contains(err.Error(), testSecret) {
		t.Errorf("Error() = %q (exit code kept: %v)", err, coded)
	}
}
