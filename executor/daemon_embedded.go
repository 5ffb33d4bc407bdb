package executor

import (
	"context"
	"fmt"
	"os"

	"github.com/kilnbuild/kiln/executor/embedded"
)

// startEmbedded runs BuildKit in this process (executor/embedded), its state
// in a private directory under cfg.StateParent that Close removes.
func startEmbedded(ctx context.Context, cfg DaemonConfig) (Daemon, error) {
	dir, err := os.MkdirTemp(cfg.StateParent, "kiln-buildkit-")
	if err != nil {
		return nil, fmt.Errorf("creating BuildKit state dir under %q (check the Kaniko dir is writable): %w", cfg.StateParent, err)
	}
	e, err := embedded.Start(ctx, embedded.Config{
		StateDir:           dir,
		Root:               cfg.Root,
		RegistryConfigTOML: cfg.RegistryConfigTOML,
		KanikoDir:          cfg.KanikoDir,
		Keep:               cfg.Keep,
		HostRoot:           cfg.HostRoot,
		Mountinfo:          cfg.mountinfo,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &embeddedDaemon{Engine: e, dir: dir}, nil
}

type embeddedDaemon struct {
	*embedded.Engine
	dir string
}

// Close stops the engine (restoring the root filesystem) and removes its
// private state.
func (d *embeddedDaemon) Close() error {
	err := d.Engine.Close()
	if rmErr := os.RemoveAll(d.dir); err == nil {
		err = rmErr
	}
	return err
}
