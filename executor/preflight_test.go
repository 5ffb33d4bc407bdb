package executor

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnbuild/kiln/executor/engine"
	"github.com/kilnbuild/kiln/migrate"
	"github.com/sirupsen/logrus"
)

func quietLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func TestApplyPreflightBlocksWithTheSettingAndTheFix(t *testing.T) {
	findings := []migrate.Finding{
		{Check: "identity", Severity: migrate.SeverityOK, Seen: "running as UID 1000"},
		{Check: "user-namespaces", Severity: migrate.SeverityError, Seen: "creating a user namespace failed: operation not permitted",
			Why: "the seccomp or AppArmor profile blocks unshare(CLONE_NEWUSER)", Fix: "securityContext: {seccompProfile: {type: Unconfined}}"},
		{Check: "seccomp", Severity: migrate.SeverityError, Seen: "seccomp filter active (Seccomp: 2)", Fix: "securityContext: {seccompProfile: {type: Unconfined}}"},
	}
	var cfg engine.Config
	err := applyPreflight(&cfg, findings, true, quietLogger())
	if err == nil {
		t.Fatal("a failing user-namespace check must stop the build before the daemon starts")
	}
	msg := err.Error()
	for _, want := range []string{"user-namespaces", "creating a user namespace failed", "seccompProfile: {type: Unconfined}"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error must be one line: %q", msg)
	}
}

func TestApplyPreflightSeccompAloneIsAdvisory(t *testing.T) {
	findings := []migrate.Finding{{Check: "seccomp", Severity: migrate.SeverityError, Seen: "seccomp filter active (Seccomp: 2)", Fix: "unconfined"}}
	var cfg engine.Config
	if err := applyPreflight(&cfg, findings, true, quietLogger()); err != nil {
		t.Fatalf("a seccomp filter alone may allow BuildKit (custom profile); got %v", err)
	}
	if got := advisoryFixes(findings); !strings.Contains(got, "seccomp filter active") {
		t.Errorf("advisoryFixes = %q, want the seccomp finding for a failed start", got)
	}
}

func TestApplyPreflightMaskedProcDisablesTheSandboxOnlyRootless(t *testing.T) {
	masked := []migrate.Finding{{Check: "proc-masks", Severity: migrate.SeverityWarning, Seen: "masked: /proc/kcore"}}
	var rootless engine.Config
	if err := applyPreflight(&rootless, masked, true, quietLogger()); err != nil {
		t.Fatal(err)
	}
	if !rootless.NoProcessSandbox {
		t.Error("rootless with a masked /proc must run without a process sandbox")
	}
	var rootful engine.Config
	if err := applyPreflight(&rootful, masked, false, quietLogger()); err != nil {
		t.Fatal(err)
	}
	if rootful.NoProcessSandbox {
		t.Error("buildkitd refuses --oci-worker-no-process-sandbox when rootful")
	}
}

func TestPreferStateVolume(t *testing.T) {
	parent := t.TempDir()
	if got := preferStateVolume(parent); got != parent {
		t.Errorf("without %s/: got %q, want the parent", StateVolumeName, got)
	}
	vol := filepath.Join(parent, StateVolumeName)
	if err := os.Mkdir(vol, 0o777); err != nil {
		t.Fatal(err)
	}
	if got := preferStateVolume(parent); got != vol {
		t.Errorf("with the state volume: got %q, want %q", got, vol)
	}
	if got := preferStateVolume(""); got != "" {
		t.Errorf("empty parent must stay empty (temp dir), got %q", got)
	}
}
