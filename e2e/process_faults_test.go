package e2e

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunForkedDaemonIsGone: a RUN that starts a daemon (new session,
// stdout still open) and exits; the build goes on, succeeds, and nothing
// of the daemon is left afterwards.
func TestRunForkedDaemonIsGone(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	forEachMode(t, func(t *testing.T, m mode) {
		marker := "kiln-daemon-" + m.name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		ctx := writeContext(t, "FROM busybox\n"+
			"RUN setsid sh -c 'while :; do sleep 1; echo tick > /tmp/daemon; done; : "+marker+"' &\n"+
			"RUN echo next > /next\n")
		repo := "e2e/" + m.name + "/daemon"
		r := m.run(t, m.stateDir(t), mirrorArgs(ctx, reg, reg.Ref(repo+":v1")))
		r.mustSucceed(t)
		assertMarkerGone(t, marker, "the RUN's daemon outlived the build")
		if got := rootFile(t, pulledOverAnyScheme(t, reg, reg.Ref(repo+":v1")), "next"); got != "next\n" {
			t.Errorf("/next = %q after a RUN left a daemon", got)
		}
	})
}

// TestRunIgnoringSIGTERMStopsWithTheJob: a RUN that ignores SIGTERM and
// never ends, and the CI job's deadline sends SIGTERM to the executor: the
// executor stops anyway, with one line, pushes nothing and leaves no
// process, mount or temp dir.
func TestRunIgnoringSIGTERMStopsWithTheJob(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	forEachMode(t, func(t *testing.T, m mode) {
		marker := "kiln-forever-" + m.name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		ctx := writeContext(t, "FROM busybox\nRUN trap '' TERM INT; echo started-"+marker+"; while :; do sleep 1; : "+marker+"; done\n")
		repo := "e2e/" + m.name + "/forever"
		state := m.stateDir(t)
		e := m.start(t, state, mirrorArgs(ctx, reg, reg.Ref(repo+":v1")))
		waitForRun(t, e, marker)
		if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		r := e.wait(t)
		assertStoppedBySIGTERM(t, r)
		assertMarkerGone(t, marker, "the RUN outlived the executor")
		assertNothingPushed(t, reg, repo)
	})
}

// TestDaemonKilledMidBuild: the BuildKit daemon gets SIGKILL (the OOM
// killer, an operator) while a RUN runs: the executor fails with one line
// saying the daemon was killed, exit 1, pushes nothing, and leaves nothing.
func TestDaemonKilledMidBuild(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	forEachMode(t, func(t *testing.T, m mode) {
		marker := "kiln-daemon-killed-" + m.name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		repo := "e2e/" + m.name + "/daemon-killed"
		state := m.stateDir(t)
		e := m.start(t, state, mirrorArgs(writeContext(t, "FROM busybox\n"+longRun(marker)), reg, reg.Ref(repo+":v1")))
		waitForRun(t, e, marker)
		killDaemons(t, state, syscall.SIGKILL)
		r := e.wait(t)
		// As root the signal is named; rootlesskit reports its child killed as exit 255.
		how := "killed by SIGKILL"
		if m.rootless {
			how = "exit code 255"
		}
		r.assertOneLineFailure(t, "the BuildKit daemon stopped during the build ("+how+")")
		assertMarkerGone(t, marker, "the RUN outlived its daemon and the executor")
		assertNothingPushed(t, reg, repo)
	})
}

// TestDaemonStoppedMidBuild: the daemon gets SIGTERM while a RUN runs.
// BuildKit drains: it finishes the running build before it exits, so the
// build completes and pushes a whole image; nothing is left.
func TestDaemonStoppedMidBuild(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	forEachMode(t, func(t *testing.T, m mode) {
		gate, open := startGate(t)
		marker := "kiln-daemon-stopped-" + m.name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		repo := "e2e/" + m.name + "/daemon-stopped"
		state := m.stateDir(t)
		e := m.start(t, state, mirrorArgs(writeContext(t, "FROM busybox\n"+gatedRun(marker, gate)+"RUN echo after > /after\n"), reg, reg.Ref(repo+":v1")))
		waitForRun(t, e, marker)
		killDaemons(t, state, syscall.SIGTERM)
		open()
		r := e.wait(t)
		if r.code == 0 {
			if _, tagged, err := reg.Manifest(repo + ":v1"); !tagged || err != nil {
				t.Errorf("the build passed but %s is not whole: tagged %v, %v", repo, tagged, err)
			}
			return
		}
		r.assertOneLineFailure(t, "")
		assertNothingPushed(t, reg, repo)
	})
}

// killDaemons sends sig to the buildkitd processes of the run in state.
func killDaemons(t *testing.T, state string, sig syscall.Signal) {
	t.Helper()
	daemons := processesNamed(state+"/", "buildkitd")
	if len(daemons) == 0 {
		t.Fatal("no buildkitd runs for the build")
	}
	for _, p := range daemons {
		syscall.Kill(p.pid, sig)
	}
}

// assertStoppedBySIGTERM: exit 143, as Kaniko dying of SIGTERM shows, and
// one last line saying so.
func assertStoppedBySIGTERM(t *testing.T, r result) {
	t.Helper()
	if r.code != 128+int(syscall.SIGTERM) {
		t.Errorf("exit code %d after SIGTERM, want 143", r.code)
	}
	if last := r.lastLine(); !strings.HasPrefix(last, "Error: the build was stopped by SIGTERM before it finished: ") {
		t.Errorf("last stderr line %q: want one line saying SIGTERM stopped the build", last)
	}
}
