package executor

import (
	"context"
	"os"
	"strings"

	"github.com/kilnbuild/kiln/executor/embedded"
	"github.com/kilnbuild/kiln/executor/engine"
)

// startEmbedded runs BuildKit in this process (executor/embedded), its state
// in a private directory under cfg.StateParent that Close removes.
func startEmbedded(ctx context.Context, cfg engine.Config) (engine.Daemon, error) {
	dir, lock, err := engine.NewStateDir(cfg.StateParent)
	if err != nil {
		return nil, err
	}
	e, err := embedded.Start(ctx, embedded.Config{
		StateDir:           dir,
		Root:               cfg.Root,
		RegistryConfigTOML: cfg.RegistryConfigTOML,
		KanikoDir:          cfg.KanikoDir,
		Keep:               cfg.Keep,
		HostRoot:           cfg.HostRoot,
		Mountinfo:          cfg.Mountinfo,
		Secrets:            cfg.Secrets,
		Exposed: func(paths []string) {
			cfg.Logger.Warnf("RUN steps can read %s: it is on a read-only mount kiln cannot take away without privileges (Kaniko's RUN reads it too); pass credentials in a writable file or DOCKER_AUTH_CONFIG to keep them from RUN", strings.Join(paths, ", "))
		},
	})
	if err != nil {
		lock.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	return &embeddedDaemon{Engine: e, dir: dir, lock: lock}, nil
}

type embeddedDaemon struct {
	*embedded.Engine
	dir  string
	lock *os.File
}

// Close stops the engine (restoring the root filesystem) and removes its
// private state.
func (d *embeddedDaemon) Close() error {
	err := d.Engine.Close()
	if rmErr := os.RemoveAll(d.dir); err == nil {
		err = rmErr
	}
	d.lock.Close()
	return err
}
