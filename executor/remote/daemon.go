// Package remote connects the build to a BuildKit daemon it did not start
// (--buildkit-host / BUILDKIT_HOST), over TLS when given certificates, and
// refuses a release kiln does not support.
package remote

import (
	"context"
	"errors"
	"fmt"

	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/moby/buildkit/client"
)

// Daemon is a connection to a remote BuildKit; closing it leaves the
// daemon running.
type Daemon struct {
	client *client.Client
}

// Connect connects to the daemon at cfg.Host once it answers ListWorkers
// and checks its release (see OldestBuildKit).
func Connect(ctx context.Context, cfg engine.Config) (*Daemon, error) {
	cfg = cfg.WithDefaults()
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
	if err := checkVersion(ctx, c, cfg.Host, cfg.Logger); err != nil {
		c.Close()
		return nil, err
	}
	return &Daemon{client: c}, nil
}

func (d *Daemon) Client(context.Context) (*client.Client, error) { return d.client, nil }

func (d *Daemon) Close() error { return d.client.Close() }
