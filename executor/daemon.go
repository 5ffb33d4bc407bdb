// Package executor runs Dockerfile builds on BuildKit: it chooses the engine
// (executor/local, executor/remote or executor/embedded, behind
// engine.Daemon), solves into a private OCI layout, and logs Kaniko-style
// progress.
package executor

import (
	"context"

	"github.com/kilnbuild/kiln/executor/embedded"
	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/executor/local"
	"github.com/kilnbuild/kiln/executor/remote"
)

// StartDaemon connects to the remote daemon named by cfg.Host, or starts
// the embedded engine or a private buildkitd, and returns once it answers.
// On any error nothing is left running or on disk.
func StartDaemon(ctx context.Context, cfg engine.Config) (engine.Daemon, error) {
	if cfg.Host != "" {
		return asDaemon(remote.Connect(ctx, cfg))
	}
	if cfg.Embedded {
		return asDaemon(embedded.StartDaemon(ctx, cfg))
	}
	return asDaemon(local.Start(ctx, cfg))
}

// asDaemon keeps a failed start's nil pointer from becoming a non-nil
// Daemon.
func asDaemon[D engine.Daemon](d D, err error) (engine.Daemon, error) {
	if err != nil {
		return nil, err
	}
	return d, nil
}
