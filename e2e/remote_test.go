package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/internal/testenv"
	"github.com/moby/buildkit/client"
)

// remoteBuildkit is a buildkitd started by the test, serving TCP with
// mutual TLS, as a shared BuildKit service in a cluster would.
type remoteBuildkit struct {
	addr   string // tcp://127.0.0.1:PORT
	ca     *testenv.CA
	client testenv.KeyPair // a client certificate the daemon accepts
}

func startRemoteBuildkit(t *testing.T, reg *testenv.Registry) *remoteBuildkit {
	t.Helper()
	return startRemoteBuildkitd(t, reg, testenv.Binaries(t).Buildkitd)
}

// startRemoteBuildkitd is startRemoteBuildkit with the given buildkitd.
func startRemoteBuildkitd(t *testing.T, reg *testenv.Registry, buildkitd string) *remoteBuildkit {
	t.Helper()
	testenv.RequireRoot(t)
	dir := testenv.ReadableTempDir(t)
	ca, err := testenv.NewCA(dir, "buildkit-ca")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.IssueServer("buildkitd", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	clientPair, err := ca.IssueClient("kiln")
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "buildkitd.toml")
	toml := fmt.Sprintf("[registry.%q]\n  http = true\n\n[otel]\n  socketPath = %q\n\n[cdi]\n  disabled = true\n",
		reg.Host, filepath.Join(dir, "otel.sock"))
	if err := os.WriteFile(config, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "buildkitd.log"))
	if err != nil {
		t.Fatal(err)
	}
	addr := "tcp://" + freePort(t)
	cmd := exec.Command(buildkitd,
		"--addr", addr, "--root", filepath.Join(dir, "root"), "--config", config,
		"--tlscert", server.CertFile, "--tlskey", server.KeyFile, "--tlscacert", ca.CertFile,
		"--oci-worker-net=host", "--containerd-worker=false")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own mount namespace: snapshot mounts go when it does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Unshareflags: syscall.CLONE_NEWNS}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting buildkitd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logFile.Close(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})

	rb := &remoteBuildkit{addr: addr, ca: ca, client: clientPair}
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := rb.connect(t)
		if err == nil {
			c.Close()
			return rb
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "buildkitd.log"))
			t.Fatalf("buildkitd exited: %s", log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("buildkitd at %s not ready: %v", addr, err)
		}
	}
}

// connect returns a client that answered ListWorkers.
func (rb *remoteBuildkit) connect(t *testing.T) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.New(ctx, rb.addr,
		client.WithServerConfig("", rb.ca.CertFile),
		client.WithCredentials(rb.client.CertFile, rb.client.KeyFile))
	if err != nil {
		return nil, err
	}
	if _, err := c.ListWorkers(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// ranCommand reports whether the daemon's build cache holds a step whose
// description contains s: proof the build ran there.
func (rb *remoteBuildkit) ranCommand(t *testing.T, s string) bool {
	t.Helper()
	c, err := rb.connect(t)
	if err != nil {
		t.Fatalf("connecting to the remote buildkitd: %v", err)
	}
	defer c.Close()
	records, err := c.DiskUsage(context.Background())
	if err != nil {
		t.Fatalf("DiskUsage: %v", err)
	}
	for _, r := range records {
		if strings.Contains(r.Description, s) {
			return true
		}
	}
	return false
}

// TestRemoteBuildkitHost: with --buildkit-host (root: the flag and
// BUILDKIT_TLSCACERT/CERT/KEY; rootless: BUILDKIT_HOST and BUILDKIT_TLSDIR)
// the build runs on that daemon and nothing is started locally.
func TestRemoteBuildkitHost(t *testing.T) {
	t.Parallel()
	reg := testenv.StartRegistry(t)
	base := testenv.PushBase(t, reg, "library/busybox:latest", testenv.BusyboxImage(t))
	rb := startRemoteBuildkit(t, reg)

	// A Kubernetes TLS secret's file names, mounted as one directory.
	tlsDir := testenv.ReadableTempDir(t)
	for from, to := range map[string]string{rb.ca.CertFile: "ca.crt", rb.client.CertFile: "tls.crt", rb.client.KeyFile: "tls.key"} {
		if err := copyFile(from, filepath.Join(tlsDir, to), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	forEachMode(t, func(t *testing.T, m mode) {
		marker := "built-remotely-" + m.name
		ctx := writeContext(t, "FROM "+base+"\nRUN echo "+marker+" > /marker\n")
		repo := "e2e/" + m.name + "/remote"
		args := []string{"--context", ctx, "--insecure-registry", reg.Host, "--destination", reg.Ref(repo + ":v1")}
		var env []string
		if m.rootless {
			env = []string{"BUILDKIT_HOST=" + rb.addr, "BUILDKIT_TLSDIR=" + tlsDir}
		} else {
			args = append(args, "--buildkit-host", rb.addr)
			env = []string{"BUILDKIT_TLSCACERT=" + rb.ca.CertFile, "BUILDKIT_TLSCERT=" + rb.client.CertFile, "BUILDKIT_TLSKEY=" + rb.client.KeyFile}
		}
		r := m.run(t, m.stateDir(t), args, env...)
		r.mustSucceed(t)
		r.assertDaemons(t, m, true)
		if !rb.ranCommand(t, marker) {
			t.Errorf("the remote buildkitd has no record of RUN echo %s: the build did not run there", marker)
		}
		img, _ := pulledImage(t, reg, reg.Ref(repo+":v1"))
		if got := rootFile(t, img, "marker"); got != marker+"\n" {
			t.Errorf("/marker = %q, want %q", got, marker+"\n")
		}
	})

	t.Run("tls-dir-and-files", func(t *testing.T) {
		t.Parallel()
		repo := "e2e/remote-tls-conflict"
		r := runAsRootOnRemote(t, base, reg, repo, rb, "BUILDKIT_TLSDIR="+tlsDir, "BUILDKIT_TLSCERT="+rb.client.CertFile)
		r.assertOneLineFailure(t, "BUILDKIT_TLSDIR cannot be combined with")
		assertNothingPushed(t, reg, repo)
	})

	t.Run("without-client-certificate", func(t *testing.T) {
		t.Parallel()
		repo := "e2e/remote-no-cert"
		r := runAsRootOnRemote(t, base, reg, repo, rb, "BUILDKIT_TLSCACERT="+rb.ca.CertFile)
		r.assertOneLineFailure(t, rb.addr)
		if r.elapsed > 30*time.Second {
			t.Errorf("a daemon refusing the client took %s to report", r.elapsed.Round(time.Second))
		}
		assertNothingPushed(t, reg, repo)
	})
}

// runAsRootOnRemote builds FROM base with --buildkit-host as root, pushing
// to repo, with env setting up (or breaking) TLS.
func runAsRootOnRemote(t *testing.T, base string, reg *testenv.Registry, repo string, rb *remoteBuildkit, env ...string) result {
	t.Helper()
	testenv.RequireRoot(t)
	ctx := writeContext(t, "FROM "+base+"\nRUN true\n")
	m := mode{name: "root"}
	args := []string{"--context", ctx, "--insecure-registry", reg.Host, "--destination", reg.Ref(repo + ":v1"), "--buildkit-host", rb.addr}
	return m.run(t, m.stateDir(t), args, env...)
}
