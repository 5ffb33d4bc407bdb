package embedded

import (
	"context"
	"errors"
	"os"
	"strings"

	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/executor/helper"
)

// Daemon is the engine as the build uses it (engine.Daemon), its state in a
// private directory under cfg.StateParent that Close removes.
type Daemon struct {
	*Engine
	dir   string
	lock  *os.File
	later bool // engine.Config.RemoveAfterExit
}

// StartDaemon runs BuildKit in this process for a build configured by cfg.
func StartDaemon(ctx context.Context, cfg engine.Config) (*Daemon, error) {
	cfg = cfg.WithDefaults()
	dir, lock, err := engine.NewStateDir(cfg.StateParent)
	if err != nil {
		return nil, err
	}
	e, err := Start(ctx, Config{
		StateDir:           dir,
		Root:               cfg.Root,
		ThrowAwayState:     cfg.ThrowAwayState(),
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
	return &Daemon{Engine: e, dir: dir, lock: lock, later: cfg.RemoveAfterExit}, nil
}

// Close stops the engine (restoring the root filesystem) and removes its
// private state, or has it removed after the executor's exit.
func (d *Daemon) Close() error {
	err := d.Engine.Close()
	var rmErr error
	if d.later {
		rmErr = helper.RemoveAfterExit([]string{d.dir}, []*os.File{d.lock}, false, "")
	} else {
		rmErr = os.RemoveAll(d.dir)
	}
	d.lock.Close()
	return errors.Join(err, rmErr)
}
