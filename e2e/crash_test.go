package e2e

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// cleanupBudget bounds how long the leftovers of a killed executor may
// take to go (its reaper kills and removes them); it is a deadline for the
// check, not a measured figure.
const cleanupBudget = time.Minute

// longRun is a RUN step that prints started-<marker>, leaves a background
// process behind (double-forked, so not RUN's child) and sleeps; every
// process of it carries marker in its command line.
func longRun(marker string) string {
	return "RUN echo started-" + marker + " && (sh -c 'sleep 600; : " + marker + "-bg' &) && sh -c 'sleep 600; : " + marker + "'\n"
}

// TestKilledExecutorLeavesNothing: kill -9 of the executor mid-RUN takes
// the daemon, rootlesskit, the RUN process and what it forked along, and
// the private state and work dirs go too.
func TestKilledExecutorLeavesNothing(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	forEachMode(t, func(t *testing.T, m mode) {
		marker := "kiln-crash-" + m.name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		ctx := writeContext(t, "FROM busybox\n"+longRun(marker))
		repo := "e2e/" + m.name + "/killed"
		state := m.stateDir(t)
		e := m.start(t, state, mirrorArgs(ctx, reg, reg.Ref(repo+":v1")))
		waitForRun(t, e, marker)
		if err := e.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		e.finish(t)
		eventuallyNothingLeft(t, state, marker)
		assertNothingPushed(t, reg, repo)
	})
}

// TestNextBuildRemovesStaleState: when the executor and its reaper are
// both killed, their private dirs stay; the next build on the machine
// removes them, and leaves those of a build still running alone.
func TestNextBuildRemovesStaleState(t *testing.T) {
	t.Parallel()
	reg := mirrorRegistry(t)
	forEachMode(t, func(t *testing.T, m mode) {
		// The live build's RUN waits for the gate to say the sweeping
		// build is done, so it is mid-RUN throughout.
		gate, sweepDone := startGate(t)
		state := m.stateDir(t)
		marker := "kiln-stale-" + m.name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)

		// A build killed together with its reaper.
		killed := m.start(t, state, mirrorArgs(writeContext(t, "FROM busybox\n"+longRun(marker)), reg, reg.Ref("e2e/"+m.name+"/stale-killed:v1")))
		waitForRun(t, killed, marker)
		reapers := processesNamed(state+"/", "kiln-reaper")
		if len(reapers) == 0 {
			t.Fatal("no kiln-reaper process runs for the build")
		}
		killed.cmd.Process.Signal(syscall.SIGKILL)
		for _, p := range reapers {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
		killed.finish(t)
		// Without a reaper the orphaned RUN has no one to kill it (no
		// cgroup to hold it by): the test does, then looks at the dirs.
		killMarked(t, marker)
		stale := privateDirs(t, state)
		if len(stale) == 0 {
			t.Fatal("killing the executor and its reaper left no private dir: nothing to sweep")
		}

		liveMarker := marker + "-live"
		live := m.start(t, state, mirrorArgs(writeContext(t, "FROM busybox\n"+gatedRun(liveMarker, gate)), reg, reg.Ref("e2e/"+m.name+"/stale-live:v1")))
		waitForRun(t, live, liveMarker)
		liveDirs := privateDirs(t, state)

		next := m.start(t, state, mirrorArgs(writeContext(t, "FROM busybox\nRUN true\n"), reg, reg.Ref("e2e/"+m.name+"/stale-next:v1")))
		next.waitSharingState(t).mustSucceed(t)
		for _, dir := range stale {
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("the next build left the killed build's %s", dir)
			}
		}
		for _, dir := range liveDirs {
			if !strings.Contains(strings.Join(stale, " "), dir) {
				if _, err := os.Stat(dir); err != nil {
					t.Errorf("the next build removed the live build's %s: %v", dir, err)
				}
			}
		}
		sweepDone()
		live.wait(t).mustSucceed(t)
	})
}

// startGate serves 503 until open is called, then 200: a RUN of gatedRun
// waits for it.
func startGate(t *testing.T) (url string, open func()) {
	t.Helper()
	var opened atomic.Bool
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !opened.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(gate.Close)
	return gate.URL, func() { opened.Store(true) }
}

// gatedRun is a RUN step that prints started-<marker>, then waits for the
// gate at url to open.
func gatedRun(marker, url string) string {
	return "RUN echo started-" + marker + " && until wget -q -O /dev/null " + url + "; do sleep 0.2; done\n"
}

// assertMarkerGone fails when a process whose command line holds marker
// still runs, and kills it.
func assertMarkerGone(t *testing.T, marker, what string) {
	t.Helper()
	if procs := processesMentioning(marker, 0); len(procs) > 0 {
		t.Errorf("%s: %v", what, procs)
		killMarked(t, marker)
	}
}

// waitForRun waits for the RUN step printing started-<marker>.
func waitForRun(t *testing.T, e *execution, marker string) {
	t.Helper()
	waitFor(t, e, 2*time.Minute, "the RUN step to start", func() bool {
		stdout, stderr := e.output(t)
		return strings.Contains(stdout+stderr, "started-"+marker)
	})
	// The echo has run; the sleeps are being started.
	time.Sleep(300 * time.Millisecond)
}

// eventuallyNothingLeft waits for a killed executor's leftovers to go, then
// checks that nothing is left.
func eventuallyNothingLeft(t *testing.T, state, marker string) {
	t.Helper()
	deadline := time.Now().Add(cleanupBudget)
	for time.Now().Before(deadline) {
		if len(processesMentioning(marker, 0)) == 0 && len(processesMentioning(state+"/", 0)) == 0 && len(privateDirs(t, state)) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if procs := processesMentioning(marker, 0); len(procs) > 0 {
		t.Errorf("RUN processes outlived the killed executor: %v", procs)
		killMarked(t, marker)
	}
	assertNothingLeft(t, state)
}

// privateDirs lists the executor's private dirs in state.
func privateDirs(t *testing.T, state string) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(state, "kiln-*"))
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

func processesNamed(s, name string) []process {
	var found []process
	for _, p := range processesMentioning(s, 0) {
		if p.name == name {
			found = append(found, p)
		}
	}
	return found
}

// killMarked kills the processes whose command line holds marker.
func killMarked(t *testing.T, marker string) {
	t.Helper()
	for range 100 {
		procs := processesMentioning(marker, os.Getpid())
		if len(procs) == 0 {
			return
		}
		for _, p := range procs {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("processes marked %s would not die", marker)
}
