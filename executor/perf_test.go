package executor

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/platforms"
	"github.com/kilnbuild/kiln/compat"
	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/flagmap"
	"github.com/kilnbuild/kiln/internal/testenv"
	bkconfig "github.com/moby/buildkit/cmd/buildkitd/config"
	"github.com/sirupsen/logrus"
)

func TestReadyListenerWaitsForReadyAmongOtherStates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	l := listenReady(path)
	if l == nil {
		t.Fatalf("listenReady(%s) = nil", path)
	}
	if got, want := l.Env(), "NOTIFY_SOCKET="+path; got != want {
		t.Errorf("Env = %q, want %q", got, want)
	}
	send := func(msg string) {
		t.Helper()
		conn, err := net.Dial("unixgram", path)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	send("STATUS=starting\nREADY=0")
	select {
	case <-l.Ready():
		t.Fatal("Ready fired before READY=1")
	case <-time.After(50 * time.Millisecond):
	}
	send("STATUS=serving\nREADY=1")
	select {
	case <-l.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("Ready did not fire after READY=1")
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left after Close: %v", err)
	}
}

func TestNilReadyListenerMeansPolling(t *testing.T) {
	// Too long for sun_path: no listener, so no environment entry either.
	l := listenReady(filepath.Join(t.TempDir(), strings.Repeat("x", 120)))
	if l != nil {
		l.Close()
		t.Fatal("listenReady succeeded on a path longer than sun_path")
	}
	if l.Env() != "" || l.Ready() != nil || l.Close() != nil {
		t.Errorf("nil listener: Env %q, Ready %v", l.Env(), l.Ready())
	}
}

func TestInheritedNotifySocketIsDropped(t *testing.T) {
	env := []string{"A=1", "NOTIFY_SOCKET=/run/systemd/notify", "B=2"}
	got := withoutNotifySocket(env)
	if want := []string{"A=1", "B=2"}; !slices.Equal(got, want) {
		t.Errorf("withoutNotifySocket = %v, want %v", got, want)
	}
	if len(env) != 3 || env[1] != "NOTIFY_SOCKET=/run/systemd/notify" {
		t.Errorf("input modified: %v", env)
	}
}

// startDebugDaemon starts a daemon whose log (debug level) lands in logs.
func startDebugDaemon(t *testing.T, cfg engine.Config, logs *testenv.SyncBuffer) *localDaemon {
	t.Helper()
	logger := testenv.Logger(logs)
	logger.Level = logrus.DebugLevel
	cfg.Debug, cfg.Logger = true, logger
	d, err := StartDaemon(context.Background(), cfg)
	if err != nil {
		t.Fatalf("StartDaemon: %v", err)
	}
	local, ok := d.(*localDaemon)
	if !ok {
		d.Close()
		t.Fatalf("StartDaemon returned %T, want a local daemon", d)
	}
	return local
}

func TestDaemonNotifiesAndStopsIdle(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		var logs testenv.SyncBuffer
		d := startDebugDaemon(t, daemonConfig(env), &logs)
		// buildkitd logs the notification after sending it; its log reaches
		// us through a pipe, possibly after StartDaemon has returned.
		notified := func() bool { return strings.Contains(logs.String(), "SdNotifyReady notified=true") }
		for deadline := time.Now().Add(3 * time.Second); !notified() && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		if !notified() {
			t.Errorf("buildkitd did not report readiness on the notify socket:\n%s", logs.String())
		}
		d.noGracefulStop()
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
		d.noGracefulStop()
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
	d := &localDaemon{cfg: engine.Config{BinDir: env.BinDir}, dir: root}
	if err := d.removeInUserNamespace(); err != nil {
		t.Fatalf("removing %s: %v", root, err)
	}
}

func TestPendingCloseCancels(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		p := startDaemonInBackground(context.Background(), daemonConfig(env))
		// Close while the daemon is still coming up.
		deadline := time.Now().Add(30 * time.Second)
		for len(testenv.ProcessesMentioning(env.StateParent)) == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if d, err := p.Wait(); d != nil && err == nil {
			t.Log("start finished before the cancellation")
		} else if !errors.Is(err, errBuildEnded) && !errors.Is(err, context.Canceled) {
			t.Errorf("Wait after Close = %v, want the start cancelled", err)
		}
		testenv.AssertNothingLeft(t, env.StateParent)
	})
}

func TestPendingStopIdle(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		p := startDaemonInBackground(context.Background(), daemonConfig(env))
		d, err := p.Wait()
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
		c, err := d.Client(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ListWorkers(context.Background()); err != nil {
			t.Fatalf("ListWorkers on the started daemon: %v", err)
		}
		p.StopIdle()
		if err := p.Close(); err != nil {
			t.Fatalf("Close after StopIdle: %v", err)
		}
		testenv.AssertNothingLeft(t, env.StateParent)
	})
}

func TestEarlyDaemonHostsMatchPlanLayerCache(t *testing.T) {
	registry, err := compat.NewRegistrySettings(&flagmap.Options{Insecure: true}, "test")
	if err != nil {
		t.Fatal(err)
	}
	// Closed ports: the cache age checks fail fast and BuildKit is left to try.
	for _, opts := range []flagmap.Options{
		{Cache: true, Destinations: []string{"127.0.0.1:1/team/app:v1"}},
		{Cache: true, CacheRepo: "127.0.0.2:1/cache", Destinations: []string{"127.0.0.1:1/team/app:v1"}},
		{Cache: true, CacheRepo: "127.0.0.2:1/cache:tag", NoPushCache: true},
		{Cache: true, CacheRepo: "oci:" + t.TempDir()},
		{Cache: false, CacheRepo: "127.0.0.2:1/cache", Destinations: []string{"127.0.0.1:1/team/app:v1"}},
	} {
		opts.CacheTTL = time.Hour
		plan, err := PlanLayerCache(context.Background(), LayerCacheConfig{Options: &opts, Registry: registry, Logger: testenv.Logger(&testenv.SyncBuffer{})})
		if err != nil {
			t.Fatalf("PlanLayerCache(%+v): %v", opts, err)
		}
		early := earlyDaemonHosts(registry, nil, &opts)
		late := daemonHosts(registry, nil, &opts)
		if plan.Push != "" {
			late.Push = append(late.Push, plan.Push)
		}
		if !slices.Equal(early.Push, late.Push) || !slices.Equal(early.Pull, late.Pull) {
			t.Errorf("cache %q, destinations %v: early hosts %+v, PlanLayerCache implies %+v", opts.CacheRepo, opts.Destinations, early, late)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	for _, tc := range []struct {
		stat  string
		state byte
		pgrp  int
		ok    bool
	}{
		{"4242 (buildkitd) S 4200 4100 4100 0 -1 4194560 1", 'S', 4100, true},
		{"77 (a) b (c)) Z 1 4100 4100 0", 'Z', 4100, true},
		{"77 (exe) R", 0, 0, false},
		{"garbage", 0, 0, false},
	} {
		state, pgrp, ok := parseProcStat([]byte(tc.stat))
		if state != tc.state || pgrp != tc.pgrp || ok != tc.ok {
			t.Errorf("parseProcStat(%q) = %q, %d, %v; want %q, %d, %v", tc.stat, state, pgrp, ok, tc.state, tc.pgrp, tc.ok)
		}
	}
}

func TestGroupAliveIgnoresOnlyExitedProcesses(t *testing.T) {
	if !groupAlive(syscall.Getpgrp()) {
		t.Error("groupAlive(own group) = false, want true")
	}
	// A zombie: a child in its own group that exited and is not reaped yet.
	cmd := exec.Command("true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for groupAlive(pgid) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if groupAlive(pgid) {
		t.Error("groupAlive counts an exited, unreaped process as alive")
	}
	if err := syscall.Kill(-pgid, 0); err != nil {
		t.Errorf("the group should still hold the zombie (kill 0: %v)", err)
	}
	cmd.Wait()
	if groupAlive(pgid) {
		t.Error("groupAlive(reaped group) = true")
	}
}

func TestDaemonConfigDisablesHistoryAndCDI(t *testing.T) {
	registryTOML := "[registry.\"reg.example:5000\"]\n  http = true\n"
	cfg, err := bkconfig.Load(strings.NewReader(daemonConfigTOML(registryTOML, "/run/kiln", "/kaniko/kiln-runc")))
	if err != nil {
		t.Fatalf("buildkitd cannot load kiln's config: %v", err)
	}
	if cfg.History == nil || cfg.History.MaxEntries == nil || *cfg.History.MaxEntries != 0 {
		t.Errorf("history = %+v, want maxEntries = 0 (recording off)", cfg.History)
	}
	if cfg.CDI.Disabled == nil || !*cfg.CDI.Disabled {
		t.Error("CDI discovery not disabled")
	}
	if reg, ok := cfg.Registries["reg.example:5000"]; !ok || reg.PlainHTTP == nil || !*reg.PlainHTTP {
		t.Errorf("registry table lost or changed: %+v", cfg.Registries)
	}
	if cfg.Workers.OCI.Binary != "/kaniko/kiln-runc" {
		t.Errorf("worker.oci.binary = %q, want kiln-runc's path", cfg.Workers.OCI.Binary)
	}
	// One platform, so that buildkitd does not probe for emulators.
	if native := platforms.Format(platforms.Normalize(platforms.DefaultSpec())); !slices.Equal(cfg.Workers.OCI.Platforms, []string{native}) {
		t.Errorf("worker.oci.platforms = %q, want [%s]", cfg.Workers.OCI.Platforms, native)
	}
}

func TestRemoveAllParallelRemovesDeepAndWideTrees(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	// Wide (one directory of more entries than a batch) and deep, with
	// symlinks (not followed) and a read-only directory.
	outside := t.TempDir()
	keep := filepath.Join(outside, "keep")
	if err := os.WriteFile(keep, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	wide := filepath.Join(root, "wide")
	deep := filepath.Join(root, "a", "b", "c", "d")
	for _, d := range []string{wide, deep} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3*removeBatch + 7 {
		if err := os.WriteFile(filepath.Join(wide, strconv.Itoa(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 40 {
		sub := filepath.Join(deep, "sub"+strconv.Itoa(i))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, "f"), []byte("data"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(deep, "link-out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "a", "b"), 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(root, "a", "b"), 0o755) })

	err := removeAllParallel(root)
	if os.Geteuid() != 0 {
		// Without root the read-only directory keeps its entries, as with
		// os.RemoveAll; the error must say so.
		if err == nil {
			t.Fatal("removeAllParallel reported success with a read-only directory in the way")
		}
		return
	}
	if err != nil {
		t.Fatalf("removeAllParallel: %v", err)
	}
	if _, err := os.Lstat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists (lstat: %v)", root, err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a symlink was followed out of the tree: %v", err)
	}
	if err := removeAllParallel(root); err != nil {
		t.Errorf("removing a missing tree: %v", err)
	}
}
