package executor

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"

	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/executor/embedded"
	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/executor/local"
	"github.com/kilnbuild/kiln/flagmap"
	"github.com/sirupsen/logrus"
)

// errBuildEnded cancels a daemon start nobody will use.
var errBuildEnded = errors.New("the build ended before BuildKit was needed")

// pendingDaemon is a daemon starting in the background while the build's
// network-bound steps (push permission check, base image and cache lookups)
// run, so start-up is off the critical path.
type pendingDaemon struct {
	cancel context.CancelCauseFunc
	done   chan struct{} // closed once the start returned
	daemon engine.Daemon
	err    error

	closeOnce sync.Once
	closeErr  error
}

// startDaemonInBackground starts what startDaemonWithPreflight would. The
// caller must Close it on every path.
func startDaemonInBackground(ctx context.Context, cfg engine.Config) *pendingDaemon {
	ctx, cancel := context.WithCancelCause(ctx)
	p := &pendingDaemon{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.daemon, p.err = startDaemonWithPreflight(ctx, cfg)
	}()
	return p
}

// Wait returns the daemon once it is ready, or why it could not start.
func (p *pendingDaemon) Wait() (engine.Daemon, error) {
	<-p.done
	return p.daemon, p.err
}

// StopIdle starts stopping the daemon without waiting, once no solve runs on
// it: the exported image is in the work dir, so shaping and publishing need
// no daemon. A private daemon is killed at once (its state is deleted
// anyway); Close joins the stop. The embedded engine gives the container its
// root filesystem back first, before outputs are written into it.
func (p *pendingDaemon) StopIdle() error {
	<-p.done
	if p.daemon == nil {
		return nil
	}
	if d, ok := p.daemon.(*embedded.Daemon); ok {
		if err := d.RestoreRoot(); err != nil {
			return err
		}
	}
	if d, ok := p.daemon.(*local.Daemon); ok {
		d.NoGracefulStop()
	}
	go p.Close()
	return nil
}

// Close cancels a start still in progress, then closes the daemon if it
// came up. It is idempotent; every call waits for the one close, including
// one StopIdle began.
func (p *pendingDaemon) Close() error {
	p.cancel(errBuildEnded)
	<-p.done
	p.closeOnce.Do(func() {
		if p.daemon != nil {
			p.closeErr = p.daemon.Close()
		}
	})
	return p.closeErr
}

// earlyDaemonHosts are the registries buildkitd.toml must configure, known
// before the network-bound steps: base images, destinations and the layer
// cache's registry (the one PlanLayerCache derives).
func earlyDaemonHosts(registry *compat.RegistrySettings, baseImages []string, opts *flagmap.Options) compat.DaemonHosts {
	hosts := daemonHosts(registry, baseImages, opts)
	if opts.Cache && !strings.HasPrefix(opts.CacheRepo, "oci:") {
		// PlanLayerCache reports the problems cacheRepository finds.
		quiet := logrus.New()
		quiet.Out = io.Discard
		if repo, _, err := cacheRepository(registry, opts, quiet); err == nil && repo != nil {
			hosts.Push = append(hosts.Push, repo.RegistryStr())
		}
	}
	return hosts
}
