package local

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/executor/helper"
	"github.com/kilnbuild/kiln/internal/testenv"
	"github.com/sirupsen/logrus"
)

// fakeExecutorEnv makes the test binary act as an executor that starts a
// daemon, prints "READY" and waits to be killed; the other two variables
// configure that daemon.
const (
	fakeExecutorEnv = "KILN_LOCAL_TEST_FAKE_EXECUTOR"
	stateParentEnv  = "KILN_LOCAL_TEST_STATE_PARENT"
	binDirEnv       = "KILN_LOCAL_TEST_BIN_DIR"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeExecutorEnv) == "" {
		os.Exit(m.Run())
	}
	// The daemon is deliberately never closed: the test kills this process.
	if _, err := Start(context.Background(), engine.Config{
		StateParent: os.Getenv(stateParentEnv),
		BinDir:      os.Getenv(binDirEnv),
	}); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("READY\n")
	select {}
}

// daemonConfig is a private daemon's configuration in env.
func daemonConfig(env testenv.ModeEnv) engine.Config {
	return engine.Config{StateParent: env.StateParent, BinDir: env.BinDir, ReadyTimeout: 60 * time.Second}
}

func TestDaemonStartAndCloseLeaveNothing(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		var debugLog testenv.SyncBuffer
		cfg := daemonConfig(env)
		logger := testenv.Logger(&debugLog)
		logger.Level = logrus.DebugLevel
		cfg.Debug, cfg.Logger = true, logger
		d, err := Start(context.Background(), cfg)
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		if !strings.Contains(debugLog.String(), "buildkitd: ") || !strings.Contains(debugLog.String(), "level=debug") {
			t.Errorf("daemon log lines not shown at debug level:\n%s", debugLog.String())
		}
		if procs := testenv.ProcessesMentioning(env.StateParent); len(procs) == 0 {
			t.Errorf("no daemon process mentions the state dir %s", env.StateParent)
		}
		c, err := d.Client(context.Background())
		if err != nil {
			t.Fatalf("Client: %v", err)
		}
		workers, err := c.ListWorkers(context.Background())
		if err != nil || len(workers) == 0 {
			t.Fatalf("ListWorkers = %d workers, %v", len(workers), err)
		}
		if got := workers[0].Labels["org.mobyproject.buildkit.worker.network"]; got != "host" {
			t.Errorf("worker network = %q, want host", got)
		}
		if err := d.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := d.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		testenv.AssertNothingLeft(t, env.StateParent)
	})
}

func TestDaemonStartCancelledCleansUp(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			// Cancel as soon as the daemon process exists, before it is ready.
			for ctx.Err() == nil && len(testenv.ProcessesMentioning(env.StateParent)) == 0 {
				time.Sleep(time.Millisecond)
			}
			cancel()
		}()
		d, err := Start(ctx, daemonConfig(env))
		if err == nil {
			d.Close()
			t.Fatal("Start succeeded despite cancellation")
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error = %v, want it to wrap context.Canceled", err)
		}
		testenv.AssertNothingLeft(t, env.StateParent)
	})
}

func TestDaemonEarlyExitReportsLogTail(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		cfg := daemonConfig(env)
		cfg.RegistryConfigTOML = "this is = = not toml"
		start := time.Now()
		d, err := Start(context.Background(), cfg)
		if err == nil {
			d.Close()
			t.Fatal("Start succeeded with an invalid config")
		}
		if elapsed := time.Since(start); elapsed > 10*time.Second {
			t.Errorf("early exit took %s to report; want well under the %s budget", elapsed, cfg.ReadyTimeout)
		}
		msg := err.Error()
		t.Logf("start-up error: %s", msg)
		if !strings.Contains(msg, "exited during start-up") || !strings.Contains(msg, "toml") {
			t.Errorf("error lacks the exit and the daemon's own message: %s", msg)
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("error is not one line: %q", msg)
		}
		testenv.AssertNothingLeft(t, env.StateParent)
	})
}

func TestDaemonMissingBinaryIsClearError(t *testing.T) {
	cfg := engine.Config{StateParent: t.TempDir(), BinDir: t.TempDir()}
	_, err := Start(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "buildkitd not found") {
		t.Fatalf("error = %v, want buildkitd not found", err)
	}
	testenv.AssertNothingLeft(t, cfg.StateParent)
}

func TestDaemonDiesWithKilledExecutor(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		stateParent := filepath.Join(env.StateParent, "killed")
		if err := os.Mkdir(stateParent, 0o755); err != nil {
			t.Fatal(err)
		}
		fakeExecutor := exec.Command(self)
		fakeExecutor.Env = append(os.Environ(), fakeExecutorEnv+"=1", stateParentEnv+"="+stateParent, binDirEnv+"="+env.BinDir)
		var stderr bytes.Buffer
		fakeExecutor.Stderr = &stderr
		stdout, err := fakeExecutor.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := fakeExecutor.Start(); err != nil {
			t.Fatal(err)
		}
		line := make([]byte, len("READY\n"))
		if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "READY\n" {
			fakeExecutor.Process.Kill()
			fakeExecutor.Wait()
			t.Fatalf("fake executor did not start its daemon (%v): %s", err, &stderr)
		}
		if len(testenv.ProcessesMentioning(stateParent)) == 0 {
			t.Fatal("no daemon process found after READY")
		}
		fakeExecutor.Process.Kill() // SIGKILL: no Close, no cleanup code runs
		fakeExecutor.Wait()
		deadline := time.Now().Add(10 * time.Second)
		for len(testenv.ProcessesMentioning(stateParent)) > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if procs := testenv.ProcessesMentioning(stateParent); len(procs) > 0 {
			t.Fatalf("daemon outlived its killed executor:\n%s", strings.Join(procs, "\n"))
		}
		if mounts := testenv.MountsMentioning(t, stateParent); len(mounts) > 0 {
			t.Errorf("mounts left:\n%s", strings.Join(mounts, "\n"))
		}
		// Its reaper removes the state the executor could not.
		for time.Now().Before(deadline) {
			if entries, _ := os.ReadDir(stateParent); len(entries) == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if entries, _ := os.ReadDir(stateParent); len(entries) > 0 {
			t.Errorf("the killed executor's state is left: %v", entries)
		}
		if err := os.RemoveAll(stateParent); err != nil {
			t.Fatal(err)
		}
	})
}

// startDebugDaemon starts a daemon whose log (debug level) lands in logs.
func startDebugDaemon(t *testing.T, cfg engine.Config, logs *testenv.SyncBuffer) *Daemon {
	t.Helper()
	logger := testenv.Logger(logs)
	logger.Level = logrus.DebugLevel
	cfg.Debug, cfg.Logger = true, logger
	d, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return d
}

func TestDaemonNotifiesAndStopsIdle(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		var logs testenv.SyncBuffer
		d := startDebugDaemon(t, daemonConfig(env), &logs)
		// buildkitd logs the notification after sending it; its log reaches
		// us through a pipe, possibly after Start has returned.
		notified := func() bool { return strings.Contains(logs.String(), "SdNotifyReady notified=true") }
		for deadline := time.Now().Add(3 * time.Second); !notified() && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		if !notified() {
			t.Errorf("buildkitd did not report readiness on the notify socket:\n%s", logs.String())
		}
		d.NoGracefulStop()
		start := time.Now()
		if err := d.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		t.Logf("idle stop and cleanup took %s", time.Since(start))
		// buildkitd logs this on SIGTERM; a killed daemon never does.
		if strings.Contains(logs.String(), "stopping server") {
			t.Errorf("idle daemon with private state was shut down gracefully, not killed:\n%s", logs.String())
		}
		testenv.AssertNothingLeft(t, env.StateParent)
	})
}

func TestPersistentRootStopsGracefully(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		var logs testenv.SyncBuffer
		cfg := daemonConfig(env)
		cfg.Root = filepath.Join(env.StateParent, "persistent-root")
		d := startDebugDaemon(t, cfg, &logs)
		d.NoGracefulStop()
		if err := d.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if !strings.Contains(logs.String(), "stopping server") {
			t.Errorf("daemon on a persistent root was not shut down gracefully:\n%s", logs.String())
		}
		if _, err := os.Stat(filepath.Join(cfg.Root, "cache.db")); err != nil {
			t.Errorf("persistent root lost its state: %v", err)
		}
		removeRootAsOwner(t, env, cfg.Root)
		testenv.AssertNothingLeft(t, env.StateParent)
	})
}

// removeRootAsOwner deletes a persistent root the test created; as the test
// user the snapshots may hold files of subordinate IDs, so rootlesskit's
// namespace does it.
func removeRootAsOwner(t *testing.T, env testenv.ModeEnv, root string) {
	t.Helper()
	if !env.Rootless {
		if err := os.RemoveAll(root); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := helper.RemoveInUserNamespace(root, env.BinDir); err != nil {
		t.Fatalf("removing %s: %v", root, err)
	}
}
