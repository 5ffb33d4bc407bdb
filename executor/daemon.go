// Package executor runs Dockerfile builds on BuildKit: it owns the daemon
// lifecycle (a private rootless or rootful buildkitd, or a remote one), the
// solve into a private OCI layout, and Kaniko-style progress logs.
package executor

import (
	"context"
	"errors"
	"fmt"

	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/executor/local"
	"github.com/moby/buildkit/client"
)

// StartDaemon connects to the remote daemon named by cfg.Host or starts a
// private one, and returns once it answers ListWorkers. On any error nothing
// is left running or on disk.
func StartDaemon(ctx context.Context, cfg engine.Config) (engine.Daemon, error) {
	cfg = cfg.WithDefaults()
	if cfg.Host != "" {
		return startRemote(ctx, cfg)
	}
	if cfg.Embedded {
		return startEmbedded(ctx, cfg)
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

type remoteDaemon struct {
	client *client.Client
}

func startRemote(ctx context.Context, cfg engine.Config) (engine.Daemon, error) {
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
	c, err := engine.ConnectWhenReady(readyCtx, cfg.Host, nil, nil, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to BuildKit at %s (--buildkit-host/BUILDKIT_HOST): %w", cfg.Host, err)
	}
	return &remoteDaemon{client: c}, nil
}

func (d *remoteDaemon) Client(context.Context) (*client.Client, error) { return d.client, nil }

func (d *remoteDaemon) Close() error { return d.client.Close() }
