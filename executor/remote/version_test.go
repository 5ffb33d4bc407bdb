package remote

import (
	"strings"
	"testing"
)

func TestDaemonRefusal(t *testing.T) {
	for _, c := range []struct {
		version string
		want    string // "" accepts
	}{
		{"v0.34.2", ""},
		{OldestBuildKit, ""},
		{"v0.26.3", ""},
		{"v0.25.2", "is v0.25.2; kiln needs BuildKit " + OldestBuildKit + " or newer"},
		{"v0.11.6", "is v0.11.6; kiln needs BuildKit"},
		{"v1.0.0-rc1", ""},
	} {
		err := daemonRefusal("tcp://bk:1234", c.version)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.version, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "tcp://bk:1234")):
			t.Errorf("%s: got %v, want an error naming the daemon and %q", c.version, err, c.want)
		}
	}
}

func TestParseRelease(t *testing.T) {
	for v, ok := range map[string]bool{"v0.26.3": true, "0.34.2": true, "v0.27.0-rc2": true, "0.0.0+unknown": false, "": false, "dev": false} {
		if _, got := parseRelease(v); got != ok {
			t.Errorf("parseRelease(%q) ok = %v, want %v", v, got, ok)
		}
	}
	if !olderThan("v0.9.10", "v0.26.0") || olderThan("v0.26.0", "v0.26.0") || !olderThan("v0.26.3", "v0.27.0") {
		t.Error("olderThan compares numbers, not strings")
	}
}
