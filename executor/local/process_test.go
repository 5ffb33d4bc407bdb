package local

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

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
