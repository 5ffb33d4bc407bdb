package executor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/internal/testenv"
	"github.com/sirupsen/logrus"
)

func TestDaemonStartAndCloseLeaveNothing(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		var debugLog testenv.SyncBuffer
		cfg := daemonConfig(env)
		logger := testenv.Logger(&debugLog)
		logger.Level = logrus.DebugLevel
		cfg.Debug, cfg.Logger = true, logger
		d, err := StartDaemon(context.Background(), cfg)
		if err != nil {
			t.Fatalf("StartDaemon: %v", err)
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
		d, err := StartDaemon(ctx, daemonConfig(env))
		if err == nil {
			d.Close()
			t.Fatal("StartDaemon succeeded despite cancellation")
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
		d, err := StartDaemon(context.Background(), cfg)
		if err == nil {
			d.Close()
			t.Fatal("StartDaemon succeeded with an invalid config")
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
	_, err := StartDaemon(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "buildkitd not found") {
		t.Fatalf("error = %v, want buildkitd not found", err)
	}
	testenv.AssertNothingLeft(t, cfg.StateParent)
}

func TestRemoteDaemonOverMTLSStartsNoLocalDaemon(t *testing.T) {
	testenv.ForEachMode(t, func(t *testing.T, env testenv.ModeEnv) {
		ca := testenv.NewTestCA(t, "buildkit-ca")
		server, err := ca.IssueServer("buildkitd", "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		clientPair, err := ca.IssueClient("executor")
		if err != nil {
			t.Fatal(err)
		}
		host := startTCPBuildkitd(t, env, ca.CertFile, server)

		remote := engine.Config{
			Host:        host,
			TLSCACert:   ca.CertFile,
			TLSCert:     clientPair.CertFile,
			TLSKey:      clientPair.KeyFile,
			StateParent: env.StateParent,
			BinDir:      t.TempDir(), // empty: starting a local daemon would fail
		}
		_, c := startTestDaemon(t, remote)
		buildScratchCopy(t, c)
		if procs := testenv.ProcessesMentioning(env.StateParent); len(procs) > 0 {
			t.Errorf("remote mode started local processes: %v", procs)
		}

		withoutClientCert := remote
		withoutClientCert.TLSCert, withoutClientCert.TLSKey = "", ""
		withoutClientCert.ReadyTimeout = 2 * time.Second
		if d, err := StartDaemon(context.Background(), withoutClientCert); err == nil {
			d.Close()
			t.Errorf("connected without a client certificate: the daemon does not enforce mTLS")
		} else if !strings.Contains(err.Error(), host) {
			t.Errorf("error does not name the BuildKit host: %v", err)
		}
	})
}

// startTCPBuildkitd starts a daemon outside StartDaemon, listening on a unix
// socket and on tcp with mTLS, and returns its tcp:// address.
func startTCPBuildkitd(t *testing.T, env testenv.ModeEnv, caFile string, server testenv.KeyPair) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpAddr := "tcp://" + l.Addr().String()
	l.Close()

	dir, err := os.MkdirTemp("", "kbk-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "buildkitd.sock")
	configFile := filepath.Join(dir, "buildkitd.toml")
	if err := os.WriteFile(configFile, []byte(daemonConfigTOML("", dir, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{filepath.Join(env.BinDir, "buildkitd")}, buildkitdArgs(engine.Config{}, dir, socket, configFile)...)
	argv = append(argv, "--addr="+tcpAddr, "--tlscacert="+caFile, "--tlscert="+server.CertFile, "--tlskey="+server.KeyFile)
	if env.Rootless {
		argv = append([]string{filepath.Join(env.BinDir, "rootlesskit"), "--state-dir=" + filepath.Join(dir, "rk"), "--net=host"}, argv...)
	}
	var logs bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+dir)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := engine.ConnectWhenReady(ctx, "unix://"+socket, exited, nil)
	if err != nil {
		t.Fatalf("standalone buildkitd: %v\n%s", err, &logs)
	}
	c.Close()
	return tcpAddr
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
