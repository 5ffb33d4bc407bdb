package local

import (
	"os"
	"strings"
	"sync"

	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/executor/helper"
	"github.com/sirupsen/logrus"
)

// daemonLog receives the daemon's stdout and stderr: it keeps a log file,
// the last lines for error messages, and forwards lines at debug level.
type daemonLog struct {
	mu      sync.Mutex
	file    *os.File
	logger  logrus.FieldLogger
	forward bool
	lines   engine.LineWriter
	last    []string
}

const daemonLogTailLines = 15

// newDaemonLog writes to file unless it is nil.
func newDaemonLog(file *os.File, logger logrus.FieldLogger, forward bool) *daemonLog {
	l := &daemonLog{file: file, logger: logger, forward: forward}
	l.lines.Emit = l.addLine
	return l
}

func (l *daemonLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		_, _ = l.file.Write(p)
	}
	return l.lines.Write(p)
}

func (l *daemonLog) addLine(line string) {
	if strings.TrimSpace(line) == "" {
		return
	}
	if l.forward {
		l.logger.Debugf("buildkitd: %s", line)
	}
	if strings.HasPrefix(line, "\t") {
		// A Go stack frame: drop it and the function line before it, so
		// the tail shows messages rather than a trace.
		if n := len(l.last); n > 0 && !strings.Contains(l.last[n-1], " ") {
			l.last = l.last[:n-1]
		}
		return
	}
	l.last = append(l.last, line)
	if len(l.last) > daemonLogTailLines {
		l.last = l.last[len(l.last)-daemonLogTailLines:]
	}
}

// tail returns the last lines joined on one line (errors stay one line).
func (l *daemonLog) tail() string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := append(append([]string(nil), l.last...), l.lines.Partial())
	return helper.OneLine(strings.Join(lines, "\n"))
}

func (l *daemonLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file == nil {
		return nil
	}
	err := l.file.Close()
	l.file = nil
	return err
}
