package executor

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/internal/testenv"
	"github.com/moby/buildkit/client"
)

// daemonConfig is a private daemon's configuration in env.
func daemonConfig(env testenv.ModeEnv) engine.Config {
	return engine.Config{StateParent: env.StateParent, BinDir: env.BinDir, ReadyTimeout: 60 * time.Second}
}

// startTestDaemon starts a daemon closed (and checked) when the test ends.
func startTestDaemon(t *testing.T, cfg engine.Config) (engine.Daemon, *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := StartDaemon(ctx, cfg)
	if err != nil {
		t.Fatalf("StartDaemon: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		testenv.AssertNothingLeft(t, cfg.StateParent)
	})
	c, err := d.Client(ctx)
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	return d, c
}

// startDaemonWithBusybox starts a test daemon that pulls from a fresh local
// registry holding the test busybox image, and returns that image's ref.
func startDaemonWithBusybox(t *testing.T, env testenv.ModeEnv) (engine.Config, string, *client.Client) {
	t.Helper()
	reg := testenv.StartRegistry(t)
	base := testenv.PushBase(t, reg, "library/busybox:latest", testenv.BusyboxImage(t))
	cfg := daemonConfig(env)
	cfg.RegistryConfigTOML = fmt.Sprintf("[registry.%q]\n  http = true\n", reg.Host)
	_, c := startTestDaemon(t, cfg)
	return cfg, base, c
}

// buildDockerfile solves a context holding only dockerfile and returns the
// image's files (see filesIn) and the build's log.
func buildDockerfile(t *testing.T, c *client.Client, dockerfile string) (map[string]string, string) {
	t.Helper()
	dir := writeContext(t, map[string]string{"Dockerfile": dockerfile})
	var logs bytes.Buffer
	res := solveOrFail(t, c, SolveRequest{
		ContextDir:     dir,
		DockerfilePath: filepath.Join(dir, "Dockerfile"),
		HostNetwork:    true,
		OutputDir:      filepath.Join(t.TempDir(), "layout"),
		Progress:       ProgressOptions{Logger: testenv.Logger(&logs), Stdout: &logs, Stderr: &logs},
	}, &logs)
	return filesIn(t, layoutImage(t, res)), logs.String()
}
