package local

import (
	"os"
	"os/exec"
	"path/filepath"

	"github.com/kilnbuild/kiln/executor/helper"
)

// reaperCommand runs the daemon argv under the reaper. The reaper holds
// the state dir's lock too, so the dir counts as live until it is gone.
func (d *Daemon) reaperCommand(argv []string) (*exec.Cmd, error) {
	cfg := helper.ReaperConfig{
		StateDir:      d.dir,
		SockDir:       d.sockDir,
		Rootless:      d.rootless,
		PrivateMounts: !d.rootless,
		RemoveOnCrash: d.cfg.CrashDirs,
		ExecutorPID:   os.Getpid(),
	}
	if d.rootless {
		rootlesskit, err := helper.FindBinary(d.cfg.BinDir, "rootlesskit")
		if err != nil {
			return nil, err
		}
		cfg.BinDir = filepath.Dir(rootlesskit)
	}
	cmd, err := cfg.Command(d.cfg.BinDir, argv)
	if err != nil {
		return nil, err
	}
	if d.lock != nil {
		cmd.ExtraFiles = []*os.File{d.lock}
	}
	return cmd, nil
}
