package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kilnbuild/kiln/executor/helper"
	"github.com/moby/buildkit/client"
)

// ErrDaemonExited reports that the daemon process ended during start-up.
var ErrDaemonExited = errors.New("BuildKit daemon exited during start-up")

// ConnectWhenReady polls client.New+ListWorkers with backoff until the
// daemon answers, ctx ends, or exited (may be nil) closes. A fresh client is
// made after each failure because gRPC backs off reconnects by seconds.
// It also retries at once when notified (may be nil) closes, the daemon's
// own readiness report; polling then only backs up a report that never
// comes, so it starts slower.
func ConnectWhenReady(ctx context.Context, address string, exited, notified <-chan struct{}, opts ...client.ClientOpt) (*client.Client, error) {
	const maxBackoff = 500 * time.Millisecond
	backoff := 10 * time.Millisecond
	if notified != nil {
		backoff = 250 * time.Millisecond
	}
	var lastErr error
	for {
		c, err := client.New(ctx, address, opts...)
		if err != nil {
			// Bad address or TLS files: retrying cannot help.
			return nil, err
		}
		attemptCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = c.ListWorkers(attemptCtx)
		cancel()
		if err == nil {
			return c, nil
		}
		c.Close()
		lastErr = err
		if tlsRejected(err) {
			// A daemon that is still starting refuses connections; one that
			// rejects our certificate (or we its) will keep doing so.
			return nil, fmt.Errorf("TLS handshake failed: %s (check the CA, client certificate and key given for BuildKit)", helper.OneLine(err.Error()))
		}
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("not ready: %w (last error: %s)", context.Cause(ctx), helper.OneLine(lastErr.Error()))
		case <-exited:
			timer.Stop()
			return nil, ErrDaemonExited
		case <-notified:
			timer.Stop()
			notified = nil // closed: it would fire on every later wait
		case <-timer.C:
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// tlsRejected reports errors from a TLS peer that refused the handshake or
// whose certificate we refused; a broken pipe is how a server's rejection of
// our client certificate surfaces under TLS 1.3.
func tlsRejected(err error) bool {
	msg := err.Error()
	for _, sign := range []string{"x509:", "tls:", "authentication handshake failed", "certificate required", "bad certificate", "broken pipe"} {
		if strings.Contains(msg, sign) {
			return true
		}
	}
	return false
}
