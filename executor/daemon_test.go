package executor

import (
	"bytes"
	"context"
	"fmt"
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
)

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
	// Configured as an operator would, not as kiln's private daemon is; the
	// default trace socket is under /run/buildkit, unwritable rootless.
	if err := os.WriteFile(configFile, fmt.Appendf(nil, "[otel]\n  socketPath = %q\n", filepath.Join(dir, "otel.sock")), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := []string{filepath.Join(env.BinDir, "buildkitd"),
		"--root=" + filepath.Join(dir, "root"), "--config=" + configFile, "--containerd-worker=false",
		"--oci-worker-net=host", "--allow-insecure-entitlement=network.host",
		"--addr=unix://" + socket, "--addr=" + tcpAddr,
		"--tlscacert=" + caFile, "--tlscert=" + server.CertFile, "--tlskey=" + server.KeyFile}
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
