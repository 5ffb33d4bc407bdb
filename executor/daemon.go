// Package executor runs Dockerfile builds on BuildKit: it owns the daemon
// lifecycle (a private rootless or rootful buildkitd, or a remote one), the
// solve into a private OCI layout, and Kaniko-style progress logs.
package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/moby/buildkit/client"
	"github.com/sirupsen/logrus"
)

// Daemon is a BuildKit endpoint the executor can solve against. Close is
// idempotent and safe to call from any goroutine, including a signal handler
// racing with a running build.
type Daemon interface {
	// Client returns the connected client; it stays valid until Close.
	Client(ctx context.Context) (*client.Client, error)
	Close() error
}

// DaemonConfig selects and configures the BuildKit endpoint.
type DaemonConfig struct {
	// Host is a remote BuildKit address (--buildkit-host / BUILDKIT_HOST),
	// e.g. tcp://buildkitd:1234 or unix:///run/buildkit/buildkitd.sock.
	// Empty starts a private daemon: rootful as euid 0, rootless otherwise.
	Host string
	// TLS for a remote tcp:// Host. CACert alone verifies the server; Cert
	// and Key add a client certificate (mTLS). ServerName defaults to the
	// host name in Host.
	TLSCACert, TLSCert, TLSKey, TLSServerName string

	// Mode is --buildkit-mode: "" or "auto" lets the preflight choose the
	// engine (migrate.Probe.Engine), else rootful, rootless or embedded.
	Mode string
	// Force lets the embedded engine run outside a container (--force).
	Force bool
	// Rootless starts the private daemon through rootlesskit even as root.
	Rootless bool
	// Embedded runs BuildKit inside this process with a worker that never
	// mounts and RUN in the container's own root filesystem, as Kaniko
	// runs it (executor/embedded): root with a container's default
	// privileges can run nothing else.
	Embedded bool
	// KanikoDir and Keep name what RUN must leave alone in the embedded
	// engine's root filesystem (see embedded.Config).
	KanikoDir string
	Keep      []string
	// Secrets are credential files the embedded engine keeps from RUN.
	Secrets []string
	// HostRoot is the root filesystem the embedded engine runs RUN in;
	// empty means "/". Tests give a directory (RUN then chroots into it).
	HostRoot string
	// mountinfo replaces /proc/self/mountinfo for the embedded engine (tests).
	mountinfo string

	// StateParent is where the private state dir (daemon root, socket,
	// config, log) is created: the Kaniko dir or $XDG_RUNTIME_DIR. It must
	// not be on overlayfs for BuildKit's overlayfs snapshotter. Empty means
	// os.TempDir().
	StateParent string
	// Root, when set, is a persistent BuildKit root (the --cache-dir state)
	// that outlives the daemon; the caller holds its lock (CacheDirState).
	// Empty keeps the root inside the private state dir.
	Root string
	// BinDir holds buildkitd, rootlesskit and kiln-runc. Empty looks next to the
	// running executable, then on PATH.
	BinDir string
	// PullOnly marks a daemon that runs no RUN step (the warmer): its OCI
	// worker uses runc itself, so kiln-runc need not be installed.
	PullOnly bool
	// CrashDirs are more private dirs of the build, removed with the
	// daemon's state should the executor be killed (see reap.go).
	CrashDirs []string
	// RegistryConfigTOML is buildkitd.toml text made only of tables such as
	// [registry."host"] (http, insecure, ca, keypair, mirrors).
	RegistryConfigTOML string

	// ReadyTimeout bounds start-up; zero means DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// StopGracePeriod is how long Close waits after SIGTERM before SIGKILL;
	// zero means DefaultStopGracePeriod.
	StopGracePeriod time.Duration
	// NoProcessSandbox runs RUN without its own PID namespace and /proc,
	// for rootless daemons in pods whose /proc is masked (Kubernetes
	// without procMount: Unmasked). RUN can then see the daemon's processes.
	NoProcessSandbox bool
	// Debug starts buildkitd with --debug and logs its lines at debug level.
	Debug bool
	// Logger receives daemon log lines; nil means logrus' standard logger.
	Logger logrus.FieldLogger
}

// Default budgets: start-up is generous because rootless start on a loaded
// node can take seconds; a SIGTERMed daemon normally exits in well under one.
const (
	DefaultReadyTimeout    = 90 * time.Second
	DefaultStopGracePeriod = 10 * time.Second
)

// StartDaemon connects to the remote daemon named by cfg.Host or starts a
// private one, and returns once it answers ListWorkers. On any error nothing
// is left running or on disk.
func StartDaemon(ctx context.Context, cfg DaemonConfig) (Daemon, error) {
	if cfg.Logger == nil {
		cfg.Logger = logrus.StandardLogger()
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	if cfg.StopGracePeriod <= 0 {
		cfg.StopGracePeriod = DefaultStopGracePeriod
	}
	if cfg.Host != "" {
		return startRemote(ctx, cfg)
	}
	if cfg.Embedded {
		return startEmbedded(ctx, cfg)
	}
	return startLocal(ctx, cfg, cfg.Rootless || os.Geteuid() != 0)
}

type remoteDaemon struct {
	client *client.Client
}

func startRemote(ctx context.Context, cfg DaemonConfig) (Daemon, error) {
	var opts []client.ClientOpt
	if cfg.TLSCACert != "" || cfg.TLSServerName != "" {
		opts = append(opts, client.WithServerConfig(cfg.TLSServerName, cfg.TLSCACert))
	}
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		if cfg.TLSCert == "" || cfg.TLSKey == "" {
			return nil, errors.New("BuildKit TLS: both a client certificate and its key are needed for mTLS; set both or neither")
		}
		opts = append(opts, client.WithCredentials(cfg.TLSCert, cfg.TLSKey))
	}
	readyCtx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	defer cancel()
	c, err := connectWhenReady(readyCtx, cfg.Host, nil, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to BuildKit at %s (--buildkit-host/BUILDKIT_HOST): %w", cfg.Host, err)
	}
	return &remoteDaemon{client: c}, nil
}

func (d *remoteDaemon) Client(context.Context) (*client.Client, error) { return d.client, nil }

func (d *remoteDaemon) Close() error { return d.client.Close() }

// errDaemonExited reports that the daemon process ended during start-up.
var errDaemonExited = errors.New("BuildKit daemon exited during start-up")

// connectWhenReady polls client.New+ListWorkers with backoff until the
// daemon answers, ctx ends, or exited (may be nil) closes. A fresh client is
// made after each failure because gRPC backs off reconnects by seconds.
func connectWhenReady(ctx context.Context, address string, exited <-chan struct{}, opts ...client.ClientOpt) (*client.Client, error) {
	return connectWhenNotified(ctx, address, exited, nil, opts...)
}

// connectWhenNotified is connectWhenReady that also retries at once when
// notified (may be nil) closes, the daemon's own readiness report. Polling
// then only backs up a report that never comes, so it starts slower.
func connectWhenNotified(ctx context.Context, address string, exited, notified <-chan struct{}, opts ...client.ClientOpt) (*client.Client, error) {
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
			return nil, fmt.Errorf("TLS handshake failed: %s (check the CA, client certificate and key given for BuildKit)", oneLine(err.Error()))
		}
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("not ready: %w (last error: %s)", context.Cause(ctx), oneLine(lastErr.Error()))
		case <-exited:
			timer.Stop()
			return nil, errDaemonExited
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

// oneLine joins a multi-line message so errors stay one line.
func oneLine(s string) string {
	var parts []string
	for line := range strings.SplitSeq(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, " ")
}
