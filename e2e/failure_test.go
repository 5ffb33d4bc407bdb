package e2e

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// assertNothingPushed fails when the registry saw a manifest PUT for repo.
func assertNothingPushed(t *testing.T, reg *testenv.Registry, repo string) {
	t.Helper()
	for _, w := range reg.Writes() {
		if w.Method == http.MethodPut && strings.HasPrefix(w.Path, "/v2/"+repo+"/manifests/") {
			t.Errorf("a failed build pushed a manifest: %s %s (%d)", w.Method, w.Path, w.Status)
		}
	}
	if tags := reg.Tags(repo); tags != nil {
		t.Errorf("a failed build left tags %v in %s", tags, repo)
	}
}

const wrongPassword = "not-the-password-4471"

// freePort returns a loopback address free for a server to listen on.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// closedPort returns a loopback address nothing listens on.
// The port stays bound, never listening, until the test ends: connections
// are refused, and no registry the suite starts meanwhile can take it (a
// port freed by Close could be).
func closedPort(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s accepted a connection; the unreachable-registry case needs it refused", addr)
	}
	return addr
}

// mirrorRegistry starts a registry serving busybox as library/busybox, the
// --registry-mirror every build here uses for `FROM busybox`.
func mirrorRegistry(t *testing.T, opts ...testenv.RegistryOption) *testenv.Registry {
	t.Helper()
	reg := testenv.StartRegistry(t, opts...)
	testenv.SeedMirror(t, reg)
	return reg
}

// mirrorArgs builds the context pushing to dest, with reg (plain HTTP)
// serving busybox as the Docker Hub mirror.
func mirrorArgs(ctx string, reg *testenv.Registry, dest string) []string {
	return []string{"--context", ctx, "--registry-mirror", reg.Host, "--insecure-registry", reg.Host, "--destination", dest}
}

func TestFailingRunExitsWithItsCode(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	ctx := writeContext(t, "FROM busybox\nRUN echo about to fail && exit 7\nRUN echo never > /never\n")

	forEachMode(t, func(t *testing.T, m mode) {
		repo := "e2e/" + m.name + "/exit7"
		r := m.run(t, m.stateDir(t), mirrorArgs(ctx, reg, reg.Ref(repo+":v1")))
		if r.code != 7 {
			t.Errorf("exit code %d, want RUN's 7", r.code)
		}
		if !strings.Contains(r.stdout+r.stderr, "about to fail") {
			t.Errorf("the failing RUN's output is not shown")
		}
		r.assertDaemons(t, m, false)
		assertNothingPushed(t, reg, repo)
	})
}

// TestFailuresAreOneLineErrors: what a user gets wrong most often fails
// fast with exit 1 and one readable line, pushes nothing and leaves nothing.
func TestFailuresAreOneLineErrors(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t, testenv.WithBasicAuth(registryUser, registryPassword))
	goodConfig := testenv.DockerConfig(t, map[string]string{reg.Host: registryUser + ":" + registryPassword})
	wrongConfig := testenv.DockerConfig(t, map[string]string{reg.Host: registryUser + ":" + wrongPassword})
	busybox := writeContext(t, "FROM busybox\nRUN true\n")
	unreachable := closedPort(t)

	cases := []struct {
		name       string
		dockerfile string // context's Dockerfile; "" uses busybox
		args       []string
		dest       string // registry path pushed to; "" means the unreachable registry
		config     string
		want       string // in the last stderr line
	}{
		{
			name: "missing-dockerfile", args: []string{"--dockerfile", "Missing.Dockerfile"},
			config: goodConfig, want: "Missing.Dockerfile",
		},
		{
			name: "parse-error", dockerfile: "FROM busybox\nBOGUS instruction\n",
			config: goodConfig, want: "Dockerfile: dockerfile parse error on line 2: unknown instruction: BOGUS",
		},
		{
			name: "unreachable-registry", config: goodConfig, want: unreachable,
		},
		{
			name: "wrong-password", config: wrongConfig, want: "error checking push permissions",
		},
		{
			name: "base-image-404", dockerfile: "FROM " + reg.Ref("e2e/missing/base:1.0") + "\nRUN true\n",
			config: goodConfig, want: "e2e/missing/base",
		},
	}
	forEachMode(t, func(t *testing.T, m mode) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				ctx := busybox
				if c.dockerfile != "" {
					ctx = writeContext(t, c.dockerfile)
				}
				repo := "e2e/fail/" + m.name + "/" + c.name
				dest := reg.Ref(repo + ":v1")
				if c.name == "unreachable-registry" {
					dest = unreachable + "/" + repo + ":v1"
				}
				args := append(mirrorArgs(ctx, reg, dest), c.args...)
				r := m.run(t, m.stateDir(t), args, "DOCKER_CONFIG="+c.config)
				r.assertOneLineFailure(t, c.want)
				assertNothingPushed(t, reg, repo)
				if strings.Contains(r.stderr, wrongPassword) || strings.Contains(r.stderr, registryPassword) {
					t.Errorf("stderr reveals a password")
				}
			})
		}
	})
}

// TestSIGTERMStopsTheBuild: Kubernetes deletes the pod mid-RUN; the executor
// must stop promptly, take its daemon along and push nothing.
func TestSIGTERMStopsTheBuild(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	ctx := writeContext(t, "FROM busybox\nRUN echo sleeping && sleep 30\n")

	forEachMode(t, func(t *testing.T, m mode) {
		repo := "e2e/" + m.name + "/sigterm"
		e := m.start(t, m.stateDir(t), mirrorArgs(ctx, reg, reg.Ref(repo+":v1")))
		waitFor(t, e, 2*time.Minute, "the RUN step to start", func() bool {
			stdout, stderr := e.output(t)
			return strings.Contains(stdout+stderr, "sleeping")
		})
		// Give the sleep a moment to be the step that is running.
		time.Sleep(300 * time.Millisecond)
		signalled := time.Now()
		if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatalf("SIGTERM: %v", err)
		}
		r := e.wait(t)
		stopped := time.Since(signalled)
		if stopped > 15*time.Second {
			t.Errorf("the executor took %s to stop after SIGTERM", stopped.Round(time.Millisecond))
		}
		assertStoppedBySIGTERM(t, r)
		r.assertDaemons(t, m, false)
		assertNothingPushed(t, reg, repo)
	})
}

// waitFor polls cond until it holds, failing when the executor exits first
// or the budget runs out.
func waitFor(t *testing.T, e *execution, budget time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(budget)
	for !cond() {
		select {
		case <-e.finished:
			_, stderr := e.output(t)
			t.Fatalf("the executor exited before %s; stderr:\n%s", what, stderr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_, stderr := e.output(t)
			t.Fatalf("waited %s for %s; stderr:\n%s", budget, what, stderr)
		}
	}
}
