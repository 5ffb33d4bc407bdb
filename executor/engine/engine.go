// Package engine is what kiln's BuildKit engines share: the Daemon the build
// solves against, the Config that selects and sets one up, and the private
// state directories, connection and binaries they need. The engines are in
// executor/local (a private buildkitd), executor/remote (--buildkit-host)
// and executor/embedded (BuildKit in this process); executor chooses one.
package engine

import (
	"context"
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

// Config selects and configures the BuildKit engine.
type Config struct {
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
	// Mountinfo replaces /proc/self/mountinfo for the embedded engine (tests).
	Mountinfo string

	// StateParent is where the private state dir (daemon root, socket,
	// config, log) is created: the Kaniko dir or $XDG_RUNTIME_DIR. It must
	// not be on overlayfs for BuildKit's overlayfs snapshotter. Empty means
	// os.TempDir().
	StateParent string
	// Root, when set, is a persistent BuildKit root (the --cache-dir state)
	// that outlives the daemon; the caller holds its lock (executor.CacheDirState).
	// Empty keeps the root inside the private state dir.
	Root string
	// BinDir holds buildkitd, rootlesskit and kiln-runc. Empty looks next to the
	// running executable, then on PATH.
	BinDir string
	// PullOnly marks a daemon that runs no RUN step (the warmer): its OCI
	// worker uses runc itself, so kiln-runc need not be installed.
	PullOnly bool
	// CrashDirs are more private dirs of the build, removed with the
	// daemon's state should the executor be killed (see executor/local's
	// reaper).
	CrashDirs []string
	// RemoveAfterExit leaves the removal of the private state to a process
	// the executor does not wait for (see helper.RemoveAfterExit).
	RemoveAfterExit bool
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

// WithDefaults fills the logger and the time budgets left unset.
func (c Config) WithDefaults() Config {
	if c.Logger == nil {
		c.Logger = logrus.StandardLogger()
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	if c.StopGracePeriod <= 0 {
		c.StopGracePeriod = DefaultStopGracePeriod
	}
	return c
}

// ThrowAwayState reports whether the engine's BuildKit root is private to
// this build: deleted after it, and left to be deleted by a crash, so its
// databases may skip fsync (kiln's BuildKit patch), collecting its garbage
// is wasted work and an idle daemon may be killed. A --cache-dir root
// outlives the build and stays durable.
func (c Config) ThrowAwayState() bool { return c.Root == "" }
