package local

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/kilnbuild/kiln/internal/testenv"
	"github.com/sirupsen/logrus"
)

func TestDaemonLogTailDropsStackTraces(t *testing.T) {
	var debug bytes.Buffer
	logger := testenv.Logger(&debug)
	logger.Level = logrus.DebugLevel
	l := newDaemonLog(nil, logger, true)
	fmt.Fprint(l, "level=info msg=starting\nbuildkitd: config is broken\nmain.main\n\t/src/main.go:10\nruntime.goexit\n\t/src/asm.s:1\n")
	fmt.Fprint(l, "partial line")
	if got, want := l.tail(), "level=info msg=starting buildkitd: config is broken partial line"; got != want {
		t.Errorf("tail = %q, want %q", got, want)
	}
	if !strings.Contains(debug.String(), "buildkitd: buildkitd: config is broken") {
		t.Errorf("daemon lines not forwarded at debug level:\n%s", &debug)
	}
}
