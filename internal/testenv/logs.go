package testenv

import (
	"bytes"
	"io"
	"sync"

	"github.com/sirupsen/logrus"
)

// Logger writes Kaniko-style log lines to w, without colours or times.
func Logger(w io.Writer) *logrus.Logger {
	l := logrus.New()
	l.Out = w
	l.Formatter = &logrus.TextFormatter{DisableColors: true, DisableTimestamp: true}
	return l
}

// SyncBuffer is a bytes.Buffer safe to read while another goroutine logs.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
