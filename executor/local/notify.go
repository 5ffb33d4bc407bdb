package local

import (
	"bytes"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
)

// notifySocketEnv is sd_notify's variable: buildkitd sends READY=1 to it once
// its gRPC listeners accept connections, so start-up needs no polling.
// BuildKit strips it from runc's environment, so RUN steps never see it.
const notifySocketEnv = "NOTIFY_SOCKET"

// readyListener receives a daemon's sd_notify datagrams.
type readyListener struct {
	path  string
	conn  *net.UnixConn
	ready chan struct{} // closed when READY=1 arrives
}

// listenReady binds a datagram socket at path. It returns nil when that is
// not possible; start-up then relies on polling alone.
func listenReady(path string) *readyListener {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil
	}
	l := &readyListener{path: path, conn: conn, ready: make(chan struct{})}
	go l.receive()
	return l
}

func (l *readyListener) receive() {
	buf := make([]byte, 4096)
	for {
		n, err := l.conn.Read(buf)
		if err != nil {
			return // closed
		}
		// A datagram is newline-separated assignments.
		for line := range bytes.SplitSeq(buf[:n], []byte("\n")) {
			if string(line) == "READY=1" {
				close(l.ready)
				return
			}
		}
	}
}

// Ready is closed once the daemon reported readiness; nil on a nil listener
// (a nil channel never fires in a select).
func (l *readyListener) Ready() <-chan struct{} {
	if l == nil {
		return nil
	}
	return l.ready
}

// Env is the daemon's environment entry, or "" without a listener.
func (l *readyListener) Env() string {
	if l == nil {
		return ""
	}
	return notifySocketEnv + "=" + l.path
}

// Close stops listening and removes the socket file.
func (l *readyListener) Close() error {
	if l == nil {
		return nil
	}
	err := l.conn.Close()
	if rmErr := os.Remove(l.path); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
		err = errors.Join(err, rmErr)
	}
	return err
}

// withoutNotifySocket drops an inherited NOTIFY_SOCKET (kiln run as a
// systemd service): the daemon's readiness is not kiln's.
func withoutNotifySocket(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		return strings.HasPrefix(kv, notifySocketEnv+"=")
	})
}
