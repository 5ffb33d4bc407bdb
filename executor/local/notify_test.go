package local

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
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
